"""eth-account is imported when the first transaction is signed, not when the signing modules
are (it imports py_ecc's BLS code, ~0.5 s of CPU the API and CLI commands need not pay), and
the process keeps CPython's recursion limit, which py_ecc raises to 100,000 at import
(issue 14)."""

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
loaded_before = "py_ecc" in sys.modules
signed = asyncio.run(signer.sign_transaction(type_2))
signed_legacy = asyncio.run(signer.sign_transaction(legacy))
print(loaded_before, "py_ecc" in sys.modules, sys.getrecursionlimit(), signed.raw[:1].hex(),
      signed_legacy.raw[:1].hex())
"""


class TestEthAccountOnFirstUse:
    def test_signing_imports_it_and_the_recursion_limit_stays(self) -> None:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
        )
        # Not loaded by the signer's import; loaded by the first signature; a type-2 (0x02)
        # and an RLP-list legacy transaction (0xf8..), limit back at 1,000.
        loaded_before, loaded_after, limit, type_byte, legacy_byte = probe.stdout.split()
        assert (loaded_before, loaded_after, limit, type_byte) == ("False", "True", "1000", "02")
        assert legacy_byte.startswith("f")
