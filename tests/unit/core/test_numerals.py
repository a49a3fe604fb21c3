"""Whole numbers from external text: ASCII digits only, bounded length; never a raise."""

import pytest

from chainflow.core.numerals import MAX_DELAY_DIGITS, ascii_int, delay_seconds


class TestAsciiInt:
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("0", 0),
            ("007", 7),
            ("123", 123),
            ("", None),
            ("\u00b2", None),  # SUPERSCRIPT TWO: isdigit() True, int() raises
            ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: int() would take it
            ("\uff11", None),  # FULLWIDTH DIGIT ONE: int() would take it
            (" 1", None),
            ("1\n", None),
            ("1_0", None),
            ("+1", None),
            ("-1", None),
            ("1.0", None),
            ("1234", None),  # longer than max_digits
        ],
    )
    def test_reads_ascii_digits_only(self, text: str, value: int | None) -> None:
        assert ascii_int(text, max_digits=3) == value

    def test_a_huge_text_is_refused_before_int_sees_it(self) -> None:
        assert ascii_int("9" * 100_000, max_digits=19) is None


class TestDelaySeconds:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [
            (None, None),
            ("", None),
            ("5", 5.0),
            (" 5\t", 5.0),
            ("600", 60.0),  # capped
            ("9" * MAX_DELAY_DIGITS, 60.0),
            ("9" * (MAX_DELAY_DIGITS + 1), None),
            ("\u00b2", None),
            ("nan", None),
            ("inf", None),
            ("1e3", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ],
    )
    def test_reads_delay_seconds(self, header: str | None, seconds: float | None) -> None:
        assert delay_seconds(header, max_s=60.0) == seconds
