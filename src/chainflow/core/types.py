"""Identity and unit types shared by every layer."""

import uuid
from typing import NewType

ChainId = NewType("ChainId", int)
Address = NewType("Address", str)  # EIP-55 checksummed
TxHash = NewType("TxHash", str)  # 0x-prefixed, 32 bytes
Wei = NewType("Wei", int)
Gwei = NewType("Gwei", int)
Nonce = NewType("Nonce", int)
WalletId = NewType("WalletId", uuid.UUID)
TxId = NewType("TxId", uuid.UUID)
AttemptId = NewType("AttemptId", uuid.UUID)  # one signed variant of a request (tx_attempts)
ApiKeyId = NewType("ApiKeyId", uuid.UUID)


class SecretBytes:
    """Bytes that never show themselves in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """Return the secret; call only where it is used, never to log or store it."""
        return self._value

    def __repr__(self) -> str:
        return "SecretBytes('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)
