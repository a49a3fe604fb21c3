"""Numbers the CLI reads from its arguments and from the API's answers: ASCII digits only,
a precise refusal (or the default) for anything else, never a traceback."""

import pytest

from chainflow.cli.demo import retry_after
from chainflow.cli.worker import parse_chain_ids
from chainflow.core.errors import InvalidInput


class TestChainIds:
    def test_reads_comma_separated_ids(self) -> None:
        assert parse_chain_ids(" 1, 137 ,") == [1, 137]

    # "٣" and "1_0" were chain ids 3 and 10 to int(); "²" raised inside it.
    @pytest.mark.parametrize("text", ["\u0663", "1_0", "\u00b2", "+1", "1,x", "0", "9" * 30, ","])
    def test_refuses_anything_but_ascii_digits(self, text: str) -> None:
        with pytest.raises(InvalidInput, match="--chains must be"):
            parse_chain_ids(text)


class TestDemoRetryAfter:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [
            (None, 1.0),
            ("3", 3.0),
            ("0", 0.1),
            ("600", 10.0),
            ("nan", 1.0),  # float("nan") passed min() and max() untouched
            ("\u00b2", 1.0),
            ("soon", 1.0),
        ],
    )
    def test_reads_whole_seconds_within_bounds(self, header: str | None, seconds: float) -> None:
        assert retry_after(header) == seconds
