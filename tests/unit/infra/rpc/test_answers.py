"""Checked readers of node answers: what passes, what is a malformed answer."""

import pytest

from chainflow.infra.rpc.answers import MalformedAnswer, check, hex_data, quantity

UINT256_MAX = 2**256 - 1
HASH = "0x" + "ab" * 32

GOOD_QUANTITIES: list[tuple[str, int]] = [
    ("0x0", 0),
    ("0x1", 1),
    ("0x400", 1024),
    ("0x7a69", 31337),
    ("0xDEADbeef", 0xDEADBEEF),  # upper-case digits: harmless, read
    ("0x01", 1),  # leading zeros: Ganache padded to whole bytes; read within the bound
    ("0x" + "0" * 64, 0),
    ("0x" + "f" * 64, UINT256_MAX),
]

# Each of these but the non-strings is read by int(x, 16) without complaint (or after a long
# conversion), which is why no reader of a node's answer calls it.
BAD_QUANTITIES: list[object] = [
    "",
    "0x",  # geth: "hex string \"0x\"" is an empty number
    "0xzz",
    "0x_1",  # int() takes underscores
    "0x1_0",
    " 0x1",  # int() strips whitespace
    "0x1 ",
    "0x1\n",
    "-0x1",  # int() takes a sign
    "+0x1",
    "1",  # no prefix
    "0X1",
    "00x1",
    "0x0x1",
    "0x\u0661",  # an Arabic-Indic digit one: int() reads it
    "0x" + "f" * 65,  # past uint256
    "0x1" + "0" * 64,
    "0x" + "0" * 65,  # 65 digits even if the value is 0: the bound is on the text
    "0x" + "1" * 100_000,
    "0x" + "1" * 10_000_000,
    None,
    1,
    1.0,
    True,
    [],
    {},
    ["0x1"],
]


@pytest.mark.parametrize(("text", "number"), GOOD_QUANTITIES)
def test_reads_a_quantity(text: str, number: int) -> None:
    assert quantity(text) == number


@pytest.mark.parametrize("value", BAD_QUANTITIES, ids=lambda v: repr(v)[:24])
def test_refuses_a_malformed_quantity(value: object) -> None:
    with pytest.raises(MalformedAnswer):
        quantity(value)


def test_a_malformed_answer_is_a_value_error() -> None:
    # Callers that caught ValueError from int(x, 16) still catch it.
    assert issubclass(MalformedAnswer, ValueError)


@pytest.mark.parametrize(
    ("text", "bits", "is_good"),
    [
        ("0x" + "f" * 16, 64, True),
        ("0x1" + "0" * 16, 64, False),  # 2**64: past a uint64
        ("0x7" + "f" * 15, 63, True),  # what a signed BIGINT column holds (nonce, block, gas)
        ("0x8" + "0" * 15, 63, False),
        ("0x" + "0" * 17, 64, False),  # the bound is on the digits, whatever they are
        ("0xff", 8, True),
        ("0x100", 8, False),
    ],
)
def test_bounds_a_quantity_by_its_bits(text: str, bits: int, is_good: bool) -> None:
    if is_good:
        assert quantity(text, bits=bits) == int(text, 16)
    else:
        with pytest.raises(MalformedAnswer):
            quantity(text, bits=bits)


@pytest.mark.parametrize("text", ["0x", "0x00", "0xdeadBEEF", HASH])
def test_reads_data(text: str) -> None:
    assert hex_data(text) == text


@pytest.mark.parametrize(
    "value", ["", "0x0", "0xabc", "0xzz", "0x 00", "00", None, 0, b"0x", "0x" + "ab" * 9 + "z"]
)
def test_refuses_malformed_data(value: object) -> None:
    with pytest.raises(MalformedAnswer):
        hex_data(value)


def test_data_of_a_size() -> None:
    assert hex_data(HASH, size=32) == HASH
    with pytest.raises(MalformedAnswer):
        hex_data(HASH[:-2], size=32)


def test_a_message_never_carries_the_answer() -> None:
    # Errors reach logs and API answers: the node's text is described, never copied.
    with pytest.raises(MalformedAnswer) as raised:
        quantity("0xsecret-looking-provider-text")
    assert "secret" not in str(raised.value)
    assert "30 characters" in str(raised.value)


RECEIPT = {
    "blockNumber": "0x10",
    "blockHash": HASH,
    "status": "0x1",
    "gasUsed": "0x5208",
    "effectiveGasPrice": "0x3b9aca00",
}

GOOD_ANSWERS: list[tuple[str, object]] = [
    ("eth_blockNumber", "0x10"),
    ("eth_chainId", "0x7a69"),
    ("eth_getBalance", "0x" + "f" * 64),
    ("eth_getTransactionCount", "0x0"),
    ("eth_estimateGas", "0x5208"),
    ("eth_getTransactionReceipt", None),  # not mined
    ("eth_getTransactionReceipt", RECEIPT),
    ("eth_getTransactionReceipt", {**RECEIPT, "status": None}),  # pre-Byzantium
    ("eth_getTransactionReceipt", {k: v for k, v in RECEIPT.items() if k != "status"}),
    ("eth_getBlockByNumber", {"number": "0x10", "timestamp": "0x6553f100"}),
    ("eth_getBlockByNumber", None),
    ("eth_feeHistory", {"baseFeePerGas": ["0x1", "0x2"], "reward": [["0x0"], ["0x5"]]}),
    ("eth_feeHistory", {"baseFeePerGas": ["0x1"]}),
    ("eth_sendRawTransaction", HASH),
    ("eth_call", "0x"),
    ("txpool_status", {"pending": "0x1", "queued": 2}),  # some nodes count in JSON numbers
    ("eth_getTransactionByHash", {"anything": "goes: not read field by field"}),
    ("web3_clientVersion", "anvil/v1"),  # a method without a shape passes
]

BAD_ANSWERS: list[tuple[str, object]] = [
    ("eth_blockNumber", "0xzz"),
    ("eth_blockNumber", 16),
    ("eth_blockNumber", "0x1" + "0" * 16),  # past uint64
    ("eth_chainId", "0x_7a69"),
    ("eth_getBalance", "-0x1"),
    ("eth_getTransactionCount", " 0x1"),
    ("eth_estimateGas", ""),
    ("eth_gasPrice", None),
    ("eth_getTransactionReceipt", "0x1"),
    ("eth_getTransactionReceipt", {**RECEIPT, "blockNumber": "0x8" + "0" * 15}),  # > BIGINT
    ("eth_getTransactionReceipt", {**RECEIPT, "blockNumber": "0xzz"}),
    ("eth_getTransactionReceipt", {k: v for k, v in RECEIPT.items() if k != "blockNumber"}),
    ("eth_getTransactionReceipt", {**RECEIPT, "blockHash": "0x" + "ab" * 5_000_000}),
    ("eth_getTransactionReceipt", {**RECEIPT, "status": "0x2"}),
    ("eth_getTransactionReceipt", {**RECEIPT, "gasUsed": "0x_1"}),
    ("eth_getTransactionReceipt", {**RECEIPT, "effectiveGasPrice": "1"}),
    ("eth_getBlockByNumber", {"number": "0x10"}),
    ("eth_getBlockByNumber", {"number": "0x10", "timestamp": "0x6553f100", "baseFeePerGas": 7}),
    ("eth_feeHistory", {"baseFeePerGas": []}),
    ("eth_feeHistory", {"baseFeePerGas": ["0x1"], "reward": [["0x0"], "0x5"]}),
    ("eth_feeHistory", {"baseFeePerGas": ["0x1"], "reward": [["0xq"]]}),
    ("eth_sendRawTransaction", HASH[:-2]),
    ("eth_call", "0xabc"),
    ("eth_getCode", 0),
    ("txpool_status", {"pending": "0xz", "queued": "0x0"}),
    ("txpool_status", {"pending": -1}),
    ("txpool_status", {"queued": 2**63}),
    ("txpool_status", []),
]


@pytest.mark.parametrize(("method", "answer"), GOOD_ANSWERS, ids=lambda v: repr(v)[:30])
def test_passes_a_well_formed_answer(method: str, answer: object) -> None:
    assert check(method, answer) == answer


def test_reads_a_pending_receipt_as_not_mined() -> None:
    """Parity/OpenEthereum answer a pooled transaction's receipt with a null blockNumber:
    not mined yet, not a bad node (review)."""
    pending = {**RECEIPT, "blockNumber": None, "blockHash": None}
    assert check("eth_getTransactionReceipt", pending) is None


@pytest.mark.parametrize(("method", "answer"), BAD_ANSWERS, ids=lambda v: repr(v)[:30])
def test_refuses_a_malformed_answer(method: str, answer: object) -> None:
    with pytest.raises(MalformedAnswer):
        check(method, answer)
