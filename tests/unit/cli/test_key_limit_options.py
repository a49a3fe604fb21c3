"""The parsers of `chainflow apikey create --expires-in` and `--rate` (issue 21)."""

import pytest
import typer

from chainflow.cli.options import duration_option, rate_option


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("30d", "2592000"),
            ("12h", "43200"),
            ("90m", "5400"),
            ("1s", "1"),
            ("3650d", "315360000"),
        ],
    )
    def test_valid(self, text: str, seconds: str) -> None:
        assert duration_option(text) == seconds

    @pytest.mark.parametrize("text", ["0d", "3651d", "soon", "30", "-1d", "1.5h", "30 d", "d", ""])
    def test_refused(self, text: str) -> None:
        with pytest.raises(typer.BadParameter):
            duration_option(text)


class TestRate:
    @pytest.mark.parametrize(
        ("text", "rate"), [("50/s", "50"), ("0.5/s", "0.5"), ("7", "7"), ("1000000/s", "1e+06")]
    )
    def test_valid(self, text: str, rate: str) -> None:
        assert rate_option(text) == rate

    @pytest.mark.parametrize("text", ["0/s", "fast", "50/m", "1000001/s", "-5/s", "nan", ""])
    def test_refused(self, text: str) -> None:
        with pytest.raises(typer.BadParameter):
            rate_option(text)
