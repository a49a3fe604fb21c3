"""The Unicode check of every request body (core/bodies.py): where a lone surrogate is, and
what finding none costs on a large body."""

import json
import time

from chainflow.core.bodies import first_unencodable

LONE = "\ud800"


class TestWhere:
    def test_a_lone_surrogate_is_named_by_its_path(self) -> None:
        assert first_unencodable({"args": [1, {"name": "a" + LONE}]}) == "args[1].name"
        assert first_unencodable({"a": [LONE]}) == "a[0]"
        assert first_unencodable(LONE) == "the body"
        assert first_unencodable({LONE: 1}) == "a field name in the body"
        assert first_unencodable({"x": {LONE: 1}}) == "a field name in x"

    def test_valid_text_is_none(self) -> None:
        assert first_unencodable({"label": "\U0001f600 ü", "args": [[1, 2], "x", None]}) is None

    def test_depth_is_no_limit(self) -> None:
        deep: object = LONE
        for _ in range(100_000):
            deep = [deep]
        assert first_unencodable(deep) == "[0]" * 100_000


def cpu_s(call: object, *args: object) -> float:
    """The best of 3 runs' process time (what it costs the event loop, not the wall clock)."""
    assert callable(call)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        call(*args)
        best = min(best, time.process_time() - started)
    return best


class TestCost:
    def test_a_large_valid_body_costs_less_than_parsing_it(self) -> None:
        # A 4 MiB batch of 500 calls with 4,000 ABI integers each: before, ~5 times what
        # parsing it cost (a path spelled per element), run on the event loop twice per
        # request. Compared with the parse on the same machine, not against a clock.
        item = {"wallet": "w", "to": "t", "function": "f(uint256[])", "args": [[1] * 4000]}
        raw = json.dumps({"transactions": [item] * 500})
        body = json.loads(raw)
        assert cpu_s(first_unencodable, body) < cpu_s(json.loads, raw)
