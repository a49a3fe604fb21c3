"""One conformance suite for every signer backend (local, PKCS#11 on SoftHSM2, AWS KMS on
LocalStack in host mode).

Each backend signs alternating EIP-1559 and legacy (EIP-155) transactions at consecutive
nonces; every one must be low-s, recover to the wallet's address, and be accepted by anvil
with the hash we computed. 100 per backend in CI; 1,000 with `-m chaos_full` (scripts/chaos).
HSM signatures use a random k, so they are compared by recovered address, never by bytes.
"""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction as LegacyTransaction
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.aws_kms import AwsKms, AwsKmsSigner
from chainflow.infra.signing.ecdsa import SECP256K1_N, WrongDigestLength
from chainflow.infra.signing.local import LocalSigner, generate_private_key
from chainflow.infra.signing.pkcs11 import Pkcs11Signer, Pkcs11Token
from chainflow.infra.signing.signer import Signer
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import SINK
from tests.support.localstack import LocalStack, kms_config
from tests.support.polling import eventually
from tests.support.softhsm import SoftHsm

BACKENDS = ["local", "pkcs11", "aws_kms"]


@pytest.fixture(params=BACKENDS)
async def signer(request: pytest.FixtureRequest) -> AsyncIterator[Signer]:
    """Each backend's fixtures are asked for only by its own runs (no LocalStack for local)."""
    if request.param == "local":
        yield LocalSigner(generate_private_key())
    elif request.param == "pkcs11":
        softhsm: SoftHsm = request.getfixturevalue("softhsm")
        token = Pkcs11Token(softhsm.config)
        label, public_key = token.generate()
        yield Pkcs11Signer(token, label, public_key)
        token.close()
    else:
        localstack: LocalStack = request.getfixturevalue("localstack")
        kms = AwsKms(kms_config(localstack.url))
        arn, public_key = await kms.public_key(await kms.create_key())
        yield AwsKmsSigner(kms, arn, public_key)


@pytest.fixture
async def rpc(anvil_url: str) -> AsyncIterator[RpcClient]:
    async with aiohttp.ClientSession() as http:
        yield RpcClient(http, anvil_url, timeout_s=10)


def transaction(nonce: int) -> dict[str, object]:
    common: dict[str, object] = {
        "chainId": ANVIL_CHAIN_ID,
        "nonce": nonce,
        "to": SINK,
        "value": nonce + 1,
        "gas": 21_000,
        "data": b"",
    }
    if nonce % 2:
        return {**common, "gasPrice": 20 * 10**9}
    return {**common, "type": 2, "maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 10**9}


def s_of(raw: bytes) -> int:
    if raw[0] < 0x7F:  # a typed envelope
        return int(TypedTransaction.from_bytes(HexBytes(raw)).as_dict()["s"])
    return int(LegacyTransaction.from_bytes(raw).s)


@pytest.mark.parametrize("count", [100, pytest.param(1000, marks=pytest.mark.chaos_full)])
async def test_signatures_are_low_s_recover_and_are_accepted_by_anvil(
    signer: Signer, rpc: RpcClient, count: int
) -> None:
    await rpc.call("anvil_setBalance", [signer.address, hex(10**21)])
    start = int(await rpc.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
    for nonce in range(start, start + count):
        signed = await signer.sign_transaction(transaction(nonce))
        assert s_of(signed.raw) <= SECP256K1_N // 2
        assert Account.recover_transaction(signed.raw) == signer.address
        accepted = await rpc.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        assert accepted == signed.hash

    async def all_mined() -> bool | None:
        mined = int(await rpc.call("eth_getTransactionCount", [signer.address, "latest"]), 16)
        return True if mined == start + count else None

    assert await eventually(all_mined, timeout_s=30)


@pytest.mark.parametrize("length", [0, 20, 31, 33, 64])
async def test_a_digest_of_the_wrong_length_is_refused(signer: Signer, length: int) -> None:
    with pytest.raises(WrongDigestLength):
        await signer.sign_digest(b"\x07" * length)
