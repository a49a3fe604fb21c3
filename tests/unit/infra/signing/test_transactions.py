"""Transactions other than plain type 2 go through eth-account, imported when the first one is
signed (not at start-up: it imports py_ecc's BLS code, ~0.5 s of CPU); the process keeps
CPython's recursion limit, which py_ecc raises to 100,000 at import (issue 14)."""

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
loaded_before = "py_ecc" in sys.modules
signed = asyncio.run(signer.sign_transaction(legacy))
print(loaded_before, "py_ecc" in sys.modules, sys.getrecursionlimit(), signed.raw[:1].hex())
"""


class TestLegacyThroughEthAccount:
    def test_first_legacy_signature_imports_eth_account_and_keeps_the_recursion_limit(
        self,
    ) -> None:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
        )
        # RLP list prefix (0xf8..): a legacy transaction, not a typed one.
        assert probe.stdout.split() == ["False", "True", "1000", "f8"]
