"""Transactions Chainflow builds (plain type 2 and legacy) are signed without eth-account; any
other dict goes through eth-account, imported when the first one is signed (not at start-up:
it imports py_ecc's BLS code, ~0.5 s of CPU). The process keeps CPython's recursion limit,
which py_ecc raises to 100,000 at import (issue 14)."""

import subprocess
import sys

_PROBE = """
import asyncio, sys
from chainflow.core.types import SecretBytes
from chainflow.infra.signing.local import LocalSigner

key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
signer = LocalSigner(SecretBytes(bytes.fromhex(key)))
legacy = {"chainId": 31337, "nonce": 7, "to": "0x000000000000000000000000000000000000dEaD",
          "value": 1, "gas": 21000, "gasPrice": 10**9, "data": b""}
type_2 = {**legacy, "type": 2, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9}
del type_2["gasPrice"]
asyncio.run(signer.sign_transaction(type_2))
asyncio.run(signer.sign_transaction(legacy))
loaded_before = "py_ecc" in sys.modules
signed = asyncio.run(signer.sign_transaction({**type_2, "accessList": []}))
print(loaded_before, "py_ecc" in sys.modules, sys.getrecursionlimit(), signed.raw[:1].hex())
"""


class TestEthAccountOnFirstUse:
    def test_only_an_unusual_dict_imports_it_and_the_recursion_limit_stays(self) -> None:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
        )
        # Type 2 and legacy signed without it; the access list (type 2, 0x02) through it.
        assert probe.stdout.split() == ["False", "True", "1000", "02"]
