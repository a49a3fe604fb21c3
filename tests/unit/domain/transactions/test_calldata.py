"""Calldata from function + args: the size is counted exactly, and before any encoding."""

import time
from typing import Any

import pytest
from eth_abi.grammar import parse

from chainflow.domain.transactions.calldata import (
    MAX_CALLDATA_BYTES,
    CalldataTooLarge,
    InvalidCall,
    encode_call,
    encode_calls,
)
from chainflow.domain.transactions.calldata_size import measure_call

ADDRESS = "0x" + "11" * 20
Call = tuple[str, list[Any]]


def measured(signature: str, args: list[Any]) -> int:
    rest = signature.split("(", 1)[1]
    types = list(parse("(" + rest).components) if rest != ")" else []
    return measure_call(types, args, limit=10**9)


class TestMeasure:
    @pytest.mark.parametrize(
        ("signature", "args"),
        [
            ("f()", []),
            ("transfer(address,uint256)", [ADDRESS, "1000"]),
            ("f(bytes)", ["0x"]),
            ("f(bytes)", ["0x" + "ab" * 33]),
            ("f(string)", ["é" * 20]),  # two bytes a character
            ("f(uint256[])", [[str(i) for i in range(100)]]),
            ("f(uint8[3],bool)", [[1, 2, 3], True]),
            ("f(uint256[2][])", [[[1, 2], [3, 4], [5, 6]]]),
            ("f(string[2])", [["a", "bcd" * 20]]),
            ("f(bytes[])", [["0x01", "0x" + "00" * 40, "0x"]]),
            ("f((uint256,address)[])", [[["1", ADDRESS], ["2", ADDRESS]]]),
            ("f((string,uint8[2])[],bytes32)", [[["x", [1, 2]], ["", [3, 4]]], "0x" + "00" * 32]),
            ("f((uint256,(string,bytes)[])[2])", [[[1, [["a", "0x01"]]], [2, []]]]),
        ],
    )
    def test_equals_the_encoded_length(self, signature: str, args: list[Any]) -> None:
        assert measured(signature, args) == len(encode_call(signature, args))


class TestLimit:
    def test_the_limit_is_inclusive(self) -> None:
        # 4 selector + 32 offset + 32 length + 32 per item: 4093 items make 131,044 bytes.
        assert len(encode_call("f(uint256[])", [["1"] * 4093])) == 131_044
        with pytest.raises(CalldataTooLarge, match=f"limit of {MAX_CALLDATA_BYTES} bytes"):
            encode_call("f(uint256[])", [["1"] * 4094])
        fits = "0x" + "ab" * (MAX_CALLDATA_BYTES - 4 - 64 - 28)  # padded to 32-byte words
        assert len(encode_call("f(bytes)", [fits])) == 131_044
        with pytest.raises(CalldataTooLarge):
            encode_call("f(bytes)", [fits + "ab"])

    @pytest.mark.parametrize(
        ("signature", "args"),
        [
            ("f(uint256[])", [["1"] * 1_500_000]),  # the 10.5 MB request
            ("f(uint256[][])", [[[]] * 1_500_000]),
            ("f(string[])", [[""] * 1_500_000]),
            ("f(string)", ["a" * 50_000_000]),
            ("f(bytes)", ["0x" + "00" * 25_000_000]),
            ("f((uint8,bool)[])", [[[1, True]] * 1_500_000]),
        ],
    )
    def test_oversized_calls_are_refused_without_walking_them(
        self, signature: str, args: list[Any]
    ) -> None:
        started = time.perf_counter()
        with pytest.raises(CalldataTooLarge):
            encode_call(signature, args)
        assert time.perf_counter() - started < 0.5  # encoding the first was ~8 s

    def test_a_fixed_array_of_the_wrong_length_is_refused_before_its_items(self) -> None:
        started = time.perf_counter()
        with pytest.raises(InvalidCall, match="must have 3 item"):
            encode_call("f(uint256[3])", [["1"] * 1_500_000])
        assert time.perf_counter() - started < 0.5

    def test_a_static_value_as_text_is_short(self) -> None:
        with pytest.raises(InvalidCall) as refused:
            encode_call("f(uint256)", ["9" * 100_000])
        assert len(refused.value.detail) < 200  # the value is not echoed

    @pytest.mark.parametrize("signature", ["f(uint7)", "f(uint256,())", "f(())", "f(uint256"])
    def test_bad_types_are_invalid_calls(self, signature: str) -> None:
        with pytest.raises(InvalidCall):
            encode_call(signature, [1])

    def test_a_function_without_arguments(self) -> None:
        assert encode_call("pause()", []).hex() == "8456cb59"

    def test_a_lone_surrogate_is_an_invalid_call(self) -> None:
        with pytest.raises(InvalidCall):
            encode_call("f(string)", ["\ud800"])


class TestEncodeCalls:
    SMALL: Call = ("transfer(address,uint256)", [ADDRESS, "1"])
    LARGE: Call = ("f(uint256[])", [["1"] * 4000])  # past the inline budget: a worker thread
    TOO_LARGE: Call = ("f(uint256[])", [["1"] * 5000])
    BAD: Call = ("f(uint8)", ["x"])

    @pytest.mark.parametrize("with_large", [False, True])
    async def test_each_call_gets_its_bytes_or_its_error(self, with_large: bool) -> None:
        calls = (
            [self.SMALL, self.LARGE, self.TOO_LARGE, self.BAD]
            if with_large
            else [
                self.SMALL,
                self.BAD,
            ]
        )
        results = await encode_calls(calls)
        assert results[0] == encode_call(*self.SMALL)
        assert isinstance(results[-1], InvalidCall)
        if with_large:
            assert results[1] == encode_call(*self.LARGE)
            assert isinstance(results[2], CalldataTooLarge)
