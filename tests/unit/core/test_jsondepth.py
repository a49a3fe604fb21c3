"""Bounded JSON nesting: the byte scan refuses exactly what a parser would nest too deep into,
whatever the recursion limit, and never refuses legitimate JSON."""

import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainflow.core.jsondepth import MAX_JSON_DEPTH, JsonTooDeep, check_depth, loads


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


# Strings full of what could fool a scan: brackets, quotes, backslashes.
_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ab\n\u00e9'), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=60,
)


class TestCheckDepth:
    def test_the_limit_itself_passes_and_one_more_is_refused(self) -> None:
        check_depth(nested(MAX_JSON_DEPTH))
        with pytest.raises(JsonTooDeep):
            check_depth(nested(MAX_JSON_DEPTH + 1))

    @pytest.mark.parametrize(
        "text",
        [
            "[" * 100_000 + "]" * 100_000,  # issue 14's crashing body
            "[" * 100_000,  # never closed: a parser recurses all the same
            '{"a":' * 50 + "1" + "}" * 50,
            "[1," * 40 + "1" + "]" * 40,
            "[[]," * 40 + "[]" + "]" * 40,  # siblings at every level
            "]" * 50 + "[" * 40,  # stray closers first: the openers still count
            # closers inside a string among plain ones cannot hide real depth
            "[" * 33 + '"a","]]]]","b",' * 3 + "1" + "]" * 33,
        ],
    )
    def test_deep_or_unclosed_input_is_refused(self, text: str) -> None:
        with pytest.raises(JsonTooDeep):
            check_depth(text.encode())

    @pytest.mark.parametrize(
        "text",
        [
            json.dumps(["[" * 100, "{" * 100]),  # brackets inside strings are text
            json.dumps(['\\"' + "[" * 100]),  # an escaped quote does not end the string
            json.dumps(["\\\\", "[" * 100]),  # an escaped backslash does not escape the quote
            json.dumps([[i] for i in range(1000)]),  # wide, not deep
            "[" * 20 + "]" * 40,  # unbalanced, but shallow: the parser refuses it
            # openers inside a string among plain ones are text
            "[" * 30 + '"a","[[[[","b",' * 3 + "1" + "]" * 30,
        ],
    )
    def test_wide_or_string_heavy_input_passes(self, text: str) -> None:
        check_depth(text.encode())

    def test_utf16_cannot_hide_brackets_in_a_fake_string(self) -> None:
        # U+2200 is the bytes 00 22 in UTF-16-LE: a byte scan would see a quote there.
        text = "[\u2200" + "[" * 100 + "]" * 100 + "]"
        with pytest.raises(JsonTooDeep):
            check_depth(text.encode("utf-16-le"))

    @given(_JSON)
    def test_refuses_exactly_what_nests_deeper_than_the_limit(self, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        limit = 3
        if depth_of(value) > limit:
            with pytest.raises(JsonTooDeep):
                check_depth(text, limit)
        else:
            check_depth(text, limit)


class TestLoads:
    def test_keeps_big_integers_exact(self) -> None:
        assert loads(b'{"value": 123456789012345678901234567890}') == {
            "value": 123456789012345678901234567890
        }

    def test_refuses_deep_input_even_under_a_huge_recursion_limit(self) -> None:
        # py_ecc sets 100,000 at import, as in every process of ours before issue 14.
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(100_000)
        try:
            with pytest.raises(JsonTooDeep):
                loads(nested(100_000))
        finally:
            sys.setrecursionlimit(previous)
