"""Build, sign and store attempts: the write-ahead step before any broadcast (DESIGN §6.3)."""

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, NotRequired, TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.logging import is_worth_logging
from chainflow.core.types import AttemptId, Nonce, Wei
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.fees import Eip1559Fees, Fees
from chainflow.domain.transactions.models import AttemptKind, AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.rows import AttemptRow, Queued
from chainflow.domain.wallets.custody import read_public_key, signer_for
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.signing.aws_kms import AwsKms
from chainflow.infra.signing.ecdsa import BadSignature
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.infra.signing.signer import (
    KeyUnreadable,
    SignatureFailed,
    Signer,
    SignerHealth,
    SignerUnavailable,
)

CANCEL_GAS = 21_000
_BAD_MAX_S = 60.0  # the longest wait between tries of a wallet that signs badly
PROBE_TASK = "signer.probe"  # the name of a background probe's task, then ":<wallet id>"


class Signers:
    """Wallets' signers, each key decrypted once per process and kept in memory (state a
    worker process keeps between rounds)."""

    def __init__(
        self,
        master_key: MasterKey,
        *,
        pkcs11: Pkcs11Token | None = None,
        aws_kms: AwsKms | None = None,
    ) -> None:
        self._master_key = master_key
        self._pkcs11 = pkcs11  # the token of wallets whose keys it holds (issue 20)
        self._aws_kms = aws_kms  # the KMS client of wallets whose keys it holds (issue 20)
        self._by_wallet: dict[uuid.UUID, Signer] = {}
        # The wallets whose signer was asked for, to probe a wallet known by its id only
        # (can_sign: lane placement, the tracker's bumps).
        self._wallets: dict[uuid.UUID, Wallet] = {}
        # Wallets whose last try to sign here failed with SignerUnavailable (issue 20): their
        # backend is probed (`health`) before a signature is tried again.
        self._down: set[uuid.UUID] = set()
        self._probes: dict[uuid.UUID, asyncio.Task[SignerHealth | None]] = {}
        # Those of them whose probe has passed since: worth a try until the next failure.
        self._passed: set[uuid.UUID] = set()
        # Wallets whose signer signed badly, in a row, and when the next try may be: a health
        # probe cannot see that fault (a local key or a moved KMS alias answers healthy), so
        # retries back off instead, from 1 s doubling to 60 s (each one an ERROR line and, on
        # KMS, a billed Sign call; review).
        self._bad: dict[uuid.UUID, tuple[int, float]] = {}
        # Wallets whose sealed key could not be decrypted (KeyUnreadable): the sealed columns
        # of the row that failed, and the failures in a row. A probe cannot see such a row
        # mended (it holds the row read then): the row is read again each round instead, and
        # tried once it differs (`unreadable`), so a repaired row signs within a round.
        self._unreadable: dict[uuid.UUID, tuple[_Sealed, int]] = {}

    async def of(self, wallet: Wallet) -> Signer:
        """The wallet's signer (or its public key read) once per process, then kept.

        Raises: SignerUnavailable, KeyUnreadable (nothing cached: the next call tries again).
        """
        signer = self._by_wallet.get(wallet.id)
        if signer is None:
            self._wallets[wallet.id] = wallet
            kms_public_key = await read_public_key(wallet, aws_kms=self._aws_kms)
            try:
                signer = signer_for(
                    wallet,
                    master=self._master_key,
                    pkcs11=self._pkcs11,
                    aws_kms=self._aws_kms,
                    kms_public_key=kms_public_key,
                )
            except KeyUnreadable:
                known = self._unreadable.get(wallet.id)
                sealed = _sealed(wallet)
                count = known[1] if known is not None and known[0] == sealed else 0
                self._unreadable[wallet.id] = (sealed, count)
                raise
            self._by_wallet[wallet.id] = signer  # still unreadable for note_signed to clear
        return signer

    def suspect(self, wallet_id: uuid.UUID) -> bool:
        """Whether the wallet's sealed key failed to decrypt here, its row not read since
        (`unreadable` tells, given the row read again)."""
        return wallet_id in self._unreadable and wallet_id not in self._by_wallet

    def suspects(self) -> list[uuid.UUID]:
        """The wallets whose sealed key failed to decrypt here and has not since (`suspect`)."""
        return [w for w in self._unreadable if w not in self._by_wallet]

    def unreadable(self, wallet: Wallet) -> bool:
        """Whether the wallet's sealed key failed to decrypt here and its row (read again by
        the caller) is unchanged since: not worth a gas estimate nor a try."""
        known = self._unreadable.get(wallet.id)
        return (
            known is not None and wallet.id not in self._by_wallet and known[0] == _sealed(wallet)
        )

    def note_unavailable(self, wallet_id: uuid.UUID, *, bad: bool = False) -> bool:
        """Note that the wallet's backend failed (`bad`: it signed badly). Returns whether the
        failure is worth logging: always for an outage (retried only after a probe passes);
        for bad signatures in a row, and for an unreadable key (tried again each time its row
        is read, not probed), the 1st, 10th and every 100th."""
        unreadable = self._unreadable.get(wallet_id)
        if unreadable is not None and wallet_id not in self._by_wallet:
            count = unreadable[1] + 1
            self._unreadable[wallet_id] = (unreadable[0], count)
            return is_worth_logging(count)
        self._down.add(wallet_id)
        self._passed.discard(wallet_id)
        if not bad:
            return True
        count = self._bad.get(wallet_id, (0, 0.0))[0] + 1
        self._bad[wallet_id] = (count, time.monotonic() + min(2.0 ** (count - 1), _BAD_MAX_S))
        return is_worth_logging(count)

    def note_signed(self, wallet_id: uuid.UUID) -> bool:
        """Forget a failure of the wallet's backend; True if there was one."""
        self._probes.pop(wallet_id, None)
        self._bad.pop(wallet_id, None)
        self._passed.discard(wallet_id)
        unreadable = self._unreadable.pop(wallet_id, None) is not None
        if wallet_id in self._down:
            self._down.discard(wallet_id)
            return True
        return unreadable

    def passed_probe(
        self, wallet_id: uuid.UUID, probe: Callable[[], Coroutine[Any, Any, SignerHealth | None]]
    ) -> bool:
        """For a wallet whose backend failed here: whether a health probe has passed since
        (None, no signer to probe, counts as passed). The probe runs in the background, one
        at a time per wallet, so no round waits for a backend that is still down (a KMS
        probe may take 2 s): False until it has answered. Once one has passed, True until
        the next failure or signature (note_unavailable, note_signed), whoever asks first (a
        round's placement, then its drain)."""
        if wallet_id in self._passed:
            return True
        bad = self._bad.get(wallet_id)
        if bad is not None and time.monotonic() < bad[1]:
            return False  # signed badly: not before its back-off ends
        running = self._probes.get(wallet_id)
        if running is None:
            name = f"{PROBE_TASK}:{wallet_id}"
            self._probes[wallet_id] = asyncio.create_task(probe(), name=name)
            return False
        if not running.done():
            return False
        del self._probes[wallet_id]
        if running.cancelled() or running.exception() is not None:
            return False
        health = running.result()
        if health is None or health.ok:
            self._passed.add(wallet_id)
            return True
        return False

    def can_sign(self, wallet_id: uuid.UUID) -> bool:
        """Whether a signature for the wallet is worth trying here now: its backend has not
        failed here, or a health probe has passed since (passed_probe, started in the
        background if none runs). A wallet down here is one whose lane this process leaves
        to a worker that can sign it (workers/placement.py)."""
        if wallet_id not in self._down:
            return True
        return self.passed_probe(wallet_id, functools.partial(self._probe, wallet_id))

    def reason_down(self, wallet_id: uuid.UUID) -> str | None:
        """Why a signature for the wallet is not worth trying here now (can_sign), as a lane's
        paused_reason: key_unreadable while its stored key cannot be read, bad_signature
        while its signer's last signatures were bad, else signer_unavailable; None if it is
        worth trying."""
        if wallet_id in self._unreadable and wallet_id not in self._by_wallet:
            return KeyUnreadable.code  # never in _down: drains skip it (probe_paused)
        if self.can_sign(wallet_id):
            return None
        return SignatureFailed.code if wallet_id in self._bad else SignerUnavailable.code

    async def _probe(self, wallet_id: uuid.UUID) -> SignerHealth | None:
        """The health of the wallet's backend, the wallet known by its id: its signer is
        built again if it never was (a token or KMS unreachable at the first try)."""
        wallet = self._wallets.get(wallet_id)
        if wallet is None:
            return await self.cached_health(wallet_id)
        return await self.health(wallet)

    async def close(self) -> None:
        """Cancel the probes still running and wait for them to end: none outlives the engine
        that started it (a KMS probe may wait seconds for an answer)."""
        probes, self._probes = list(self._probes.values()), {}
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)

    def is_down(self, wallet_id: uuid.UUID) -> bool:
        return wallet_id in self._down

    async def cached_health(self, wallet_id: uuid.UUID) -> SignerHealth | None:
        """The health of the wallet's signer made here before; None if none was made."""
        signer = self._by_wallet.get(wallet_id)
        return None if signer is None else await signer.health()

    async def health(self, wallet: Wallet) -> SignerHealth:
        """The wallet's backend health (a cheap, bounded probe; never raises)."""
        try:
            signer = await self.of(wallet)
        except SignerUnavailable as exc:
            return SignerHealth(ok=False, detail=exc.detail)
        return await signer.health()


_Sealed = tuple[object, ...]


def _sealed(wallet: Wallet) -> _Sealed:
    """What a wallet's key is read from, so what an operator's repair changes: the sealed
    columns, the address (the associated data they are bound to) and the signer's kind and
    reference (review: a repaired address was never tried again)."""
    return (
        wallet.encrypted_key,
        wallet.wrapped_data_key,
        wallet.master_key_id,
        wallet.address,
        wallet.signer_kind,
        wallet.key_ref,
    )


class TxFields(TypedDict):
    """The dict eth-account signs, in its field names (a wire shape, as in web3.py)."""

    chainId: int
    nonce: int
    to: str
    value: int
    data: bytes
    gas: int
    type: NotRequired[int]
    maxFeePerGas: NotRequired[int]
    maxPriorityFeePerGas: NotRequired[int]
    gasPrice: NotRequired[int]


def tx_fields(
    tx: Transaction | Queued,
    *,
    chain: ChainConfig,
    nonce: int,
    gas_limit: int,
    fees: Fees,
    cancel: bool,
) -> TxFields:
    """The fields to sign. A cancel is a 0-value self-transfer at the same nonce."""
    fields: TxFields = {
        "chainId": chain.chain_id,
        "nonce": nonce,
        "to": tx.from_address if cancel else tx.to_address,
        "value": 0 if cancel else tx.value_wei,
        "data": b"" if cancel else tx.data,
        "gas": CANCEL_GAS if cancel else gas_limit,
    }
    if isinstance(fees, Eip1559Fees):
        fields["type"] = 2
        fields["maxFeePerGas"] = fees.max_fee_per_gas_wei
        fields["maxPriorityFeePerGas"] = fees.max_priority_fee_per_gas_wei
    else:
        fields["gasPrice"] = fees.gas_price_wei
    return fields


def _wei(fields: TxFields, name: str) -> Wei | None:
    value = fields.get(name)
    return Wei(value) if isinstance(value, int) else None


async def signed_attempt(
    tx: Transaction | Queued,
    *,
    signer: Signer,
    chain: ChainConfig,
    nonce: Nonce,
    gas_limit: int,
    fees: Fees,
    kind: AttemptKind,
) -> AttemptRow:
    """Sign an attempt of `tx`; its row (id, raw bytes, hash, fees, ...).

    Raises: SignerUnavailable, and its SignatureFailed when the signature is not a valid one
    for the wallet's key (every caller makes its lane wait, as for a backend that is down).
    """
    cancel = kind is AttemptKind.CANCEL
    fields = tx_fields(tx, chain=chain, nonce=nonce, gas_limit=gas_limit, fees=fees, cancel=cancel)
    try:
        signed = await signer.sign_transaction(fields)
    except BadSignature as exc:  # its message names no key, digest or signature bytes
        raise SignatureFailed(str(exc)) from None
    return {
        "id": AttemptId(uuid.uuid4()),
        "tx_id": tx.id,
        "kind": kind,
        "status": AttemptStatus.SIGNED,
        "nonce": nonce,
        "gas_limit": fields["gas"],
        "max_fee_per_gas_wei": _wei(fields, "maxFeePerGas"),
        "max_priority_fee_per_gas_wei": _wei(fields, "maxPriorityFeePerGas"),
        "gas_price_wei": _wei(fields, "gasPrice"),
        "raw": signed.raw,
        "hash": signed.hash,
        "broadcast_count": 0,
        "created_at": utcnow(),
    }


async def sign_attempt(
    session: AsyncSession,
    tx: Transaction,
    *,
    signer: Signer,
    chain: ChainConfig,
    nonce: Nonce,
    gas_limit: int,
    fees: Fees,
    kind: AttemptKind,
) -> TxAttempt:
    """Sign and add an attempt row; the caller commits before sending it."""
    row = await signed_attempt(
        tx, signer=signer, chain=chain, nonce=nonce, gas_limit=gas_limit, fees=fees, kind=kind
    )
    attempt = TxAttempt(**row)
    session.add(attempt)
    return attempt
