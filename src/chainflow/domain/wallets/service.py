"""Use cases of wallets: import, generate, read, change status, enable per chain."""

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.addresses import parse_wallet_ref
from chainflow.core.clock import utcnow
from chainflow.core.cursor import decode_cursor, encode_cursor
from chainflow.core.errors import InvalidInput
from chainflow.core.redaction import has_key_material
from chainflow.core.restrictions import UNRESTRICTED, Restrictions
from chainflow.core.types import SecretBytes, WalletId
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.errors import ChainNotFound, UnknownChain
from chainflow.domain.wallets import repository
from chainflow.domain.wallets.binding import SignerRequest, check_canary, open_signer
from chainflow.domain.wallets.custody import ForeignKeyIds, check_sealing_key, seal_into
from chainflow.domain.wallets.errors import (
    AdminRequired,
    InvalidAddress,
    InvalidStatusTransition,
    LaneNotFound,
    WalletExists,
    WalletNotFound,
)
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain, WalletStatus
from chainflow.infra.db.lease_clock import lease_times
from chainflow.infra.signing.aws_kms import AwsKms
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import address_of
from chainflow.infra.signing.pkcs11 import Pkcs11Token

# (from, to) pairs a caller may ask for; disabled → active needs the admin scope.
_ALLOWED = {
    (WalletStatus.ACTIVE, WalletStatus.PAUSED),
    (WalletStatus.PAUSED, WalletStatus.ACTIVE),
    (WalletStatus.ACTIVE, WalletStatus.DISABLED),
    (WalletStatus.PAUSED, WalletStatus.DISABLED),
    (WalletStatus.DISABLED, WalletStatus.ACTIVE),
}


async def import_wallet(
    session: AsyncSession,
    private_key: SecretBytes,
    *,
    master: MasterKey,
    label: str | None = None,
    chain_ids: Sequence[int] = (),
    sealed_rows: ForeignKeyIds,
) -> Wallet:
    """Store a wallet for a validated key, sealed under the master key; `sealed_rows` counts
    the stored rows of every kind under keys `master` does not know (check_sealing_key:
    domain/master_key.foreign_key_ids, which every caller passes).

    Raises:
        WalletExists: the address is already stored (no second row).
        UnknownChain: a chain id is not in the registry.
        MasterKeyRotated, RotationRunning: `master` is not, or may soon not be, the current key.
        InvalidInput: the label looks like a private key (it would be stored in clear).
    """
    if label is not None and has_key_material(label):  # the CLI's path; the API's schema too
        raise InvalidInput("a label must not hold 64 hex digits in a row: it looks like a key")
    address = str(address_of(private_key))
    await _check_new(session, address, chain_ids)
    await check_sealing_key(session, master=master, sealed_rows=sealed_rows)
    wallet = Wallet(id=uuid.uuid4(), address=address, label=label, status=WalletStatus.ACTIVE)
    wallet.signer_kind = SignerKind.LOCAL
    seal_into(wallet, private_key, master=master)
    return await _insert(session, wallet, chain_ids)


async def bind_wallet(
    session: AsyncSession,
    request: SignerRequest,
    *,
    pkcs11: Pkcs11Token | None,
    aws_kms: AwsKms | None = None,
    label: str | None = None,
    chain_ids: Sequence[int] = (),
) -> Wallet:
    """Store a wallet whose key stays in a signing backend, after a canary signature
    recovered to its address. A key generated in the token (or KMS) stays there if storing
    fails.

    Raises:
        SignerNotConfigured, SignerKeyNotFound, SignerWrongCurve, SignerWrongKeyUsage,
        SignerCanaryFailed,
        SignerUnavailable, WalletExists, UnknownChain, InvalidInput (a key-like label).
    """
    if label is not None and has_key_material(label):
        raise InvalidInput("a label must not hold 64 hex digits in a row: it looks like a key")
    await _check_chains(session, chain_ids)
    signer = await open_signer(request, pkcs11=pkcs11, aws_kms=aws_kms)
    await check_canary(signer)
    address = str(signer.address)
    await _check_new(session, address, chain_ids)
    wallet = Wallet(id=uuid.uuid4(), address=address, label=label, status=WalletStatus.ACTIVE)
    wallet.signer_kind = request.kind
    wallet.key_ref = signer.key_ref
    return await _insert(session, wallet, chain_ids)


async def _check_new(session: AsyncSession, address: str, chain_ids: Sequence[int]) -> None:
    if await repository.get_by_address(session, address) is not None:
        raise WalletExists(f"wallet {address} is already imported")
    await _check_chains(session, chain_ids)


async def _insert(session: AsyncSession, wallet: Wallet, chain_ids: Sequence[int]) -> Wallet:
    wallet.chains = [WalletChain(chain_id=chain_id, enabled=True) for chain_id in set(chain_ids)]
    session.add(wallet)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise WalletExists(f"wallet {wallet.address} is already imported") from None
    return wallet


async def _check_chains(session: AsyncSession, chain_ids: Sequence[int]) -> None:
    for chain_id in sorted(set(chain_ids)):
        try:
            await chains.get_chain(session, chain_id)
        except ChainNotFound:
            raise UnknownChain(f"chain {chain_id} is not in the registry") from None


async def get_wallet(
    session: AsyncSession,
    ref: str | uuid.UUID,
    *,
    lanes: bool = True,
    restrictions: Restrictions = UNRESTRICTED,
) -> Wallet:
    """Find a wallet by id or by address (all lower, all upper or checksummed); without
    `lanes`, by id only and its `chains` not loaded.

    Raises: WalletNotFound. InvalidAddress: `ref` is shaped like an address but is not one.
    KeyRestricted: outside `restrictions`, whether it exists or not.
    """
    if isinstance(ref, uuid.UUID):
        wallet = await repository.get(session, ref, lanes=lanes)
    else:
        wallet = await _by_ref(session, ref)
    restrictions.check_wallet(wallet.id if wallet is not None else None)
    if wallet is None:
        raise WalletNotFound(f"wallet {ref} does not exist")
    return wallet


async def get_visible_wallet(
    session: AsyncSession, ref: str, *, restrictions: Restrictions = UNRESTRICTED
) -> Wallet:
    """get_wallet for reading it: a key limited to some chains sees only the wallets enabled
    on one of them (as `list_wallets` lists them).

    Raises: KeyRestricted, for such a key, whether the wallet is elsewhere or does not exist
    (a wallet-limited key's answer for another wallet). WalletNotFound. InvalidAddress.
    """
    try:
        wallet = await get_wallet(session, ref, restrictions=restrictions)
    except WalletNotFound:
        restrictions.check_on_its_chains(None)
        raise
    restrictions.check_on_its_chains([lane.chain_id for lane in wallet.chains if lane.enabled])
    return wallet


async def _by_ref(session: AsyncSession, ref: str) -> Wallet | None:
    try:
        parsed = parse_wallet_ref(ref)
    except ValueError as exc:
        raise InvalidAddress(f"wallet address {exc}") from None
    if isinstance(parsed, uuid.UUID):
        return await repository.get(session, parsed)
    return None if parsed is None else await repository.get_by_address(session, parsed)


async def list_wallets(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    restrictions: Restrictions = UNRESTRICTED,
) -> tuple[Sequence[Wallet], str | None]:
    """One page of wallets in creation order, and the cursor of the next page (a restricted
    key's wallets only: those it lists, enabled on one of its chains)."""
    rows = await repository.list_page(
        session,
        limit=limit + 1,
        after=decode_cursor(cursor),
        ids=restrictions.wallet_ids,
        chain_ids=restrictions.chain_ids,
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def update_wallet(
    session: AsyncSession,
    wallet: Wallet,
    *,
    changes: dict[str, object],
    is_admin: bool,
) -> Wallet:
    """Apply a status and/or label change. Raises: InvalidStatusTransition, AdminRequired."""
    status = changes.get("status")
    if isinstance(status, WalletStatus) and status is not wallet.status:
        check_status_change(wallet.status, status, is_admin=is_admin)
        wallet.status = status
    if "label" in changes:
        wallet.label = changes["label"] if isinstance(changes["label"], str) else None
    await session.flush()
    return wallet


def check_status_change(current: WalletStatus, wanted: WalletStatus, *, is_admin: bool) -> None:
    """Refuse transitions outside the lifecycle active ⇄ paused, → disabled, disabled → active."""
    if (current, wanted) not in _ALLOWED:
        raise InvalidStatusTransition(f"a {current} wallet cannot become {wanted}")
    if current is WalletStatus.DISABLED and not is_admin:
        raise AdminRequired("re-enabling a disabled wallet needs the admin scope")


async def set_chain_enabled(
    session: AsyncSession, wallet: Wallet, chain_id: int, *, enabled: bool
) -> WalletChain:
    """Enable or disable the wallet on a chain; the lane row and its nonce cursor are kept."""
    await chains.get_chain(session, chain_id)
    lane = await repository.get_lane(session, wallet.id, chain_id)
    if lane is None:
        lane = WalletChain(wallet_id=wallet.id, chain_id=chain_id, enabled=enabled, next_nonce=0)
        session.add(lane)
    lane.enabled = enabled
    await session.flush()
    return lane


async def claim_lanes(
    session: AsyncSession,
    wallet_ids: Sequence[uuid.UUID],
    chain_id: int,
    *,
    owner: str,
    ttl_s: float,
) -> dict[WalletId, repository.Claimed]:
    """Take or renew the drain lease of these lanes for `owner`; returns the lanes it now
    holds, with their next nonce and whether they show `nonce_gap` (those another live
    process holds are left to it). Only an optimisation: two drains of one lane would both
    estimate, then queue on the lane lock, which keeps nonces single-writer."""
    if not wallet_ids:
        return {}
    now, until = lease_times(session, ttl_s)  # the database server's clock (PostgreSQL)
    return await repository.take_leases(
        session, wallet_ids, chain_id, owner=owner, now=now, until=until
    )


async def release_lanes(
    db: AsyncSession | AsyncConnection,
    wallet_ids: Sequence[uuid.UUID],
    chain_id: int,
    *,
    owner: str,
) -> None:
    """Free the drain lease `owner` holds of these lanes, so that another worker takes them
    at once (lane placement, workers/placement.py). One statement: `db` may be a connection
    in autocommit (`single_statements`). In wallet id order, as every lane lock is taken."""
    if wallet_ids:
        await repository.release_leases(db, sorted(wallet_ids), chain_id, owner=owner)


async def get_wallets(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID]
) -> dict[WalletId, Wallet]:
    """The wallets that exist among `wallet_ids`, by id (lanes not loaded)."""
    return await repository.get_many(session, wallet_ids) if wallet_ids else {}


async def addresses_of(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID]
) -> dict[WalletId, str]:
    """The address of each wallet that exists among `wallet_ids`."""
    return await repository.addresses_of(session, wallet_ids) if wallet_ids else {}


async def lock_lanes(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID], chain_id: int
) -> dict[WalletId, WalletChain]:
    """lock_lane for many lanes, locked in wallet id order; a lane that does not exist is
    absent from the result."""
    return await repository.lock_lanes(session, wallet_ids, chain_id) if wallet_ids else {}


async def store_next_nonces(
    session: AsyncSession, chain_id: int, nonces: Mapping[WalletId, int]
) -> None:
    """Write the nonce cursors of lanes of one chain that the caller's transaction locked
    (lock_lanes), in one statement whatever their number."""
    if nonces:
        await repository.store_next_nonces(session, chain_id, nonces, now=utcnow())


async def lock_lane(session: AsyncSession, wallet_id: uuid.UUID, chain_id: int) -> WalletChain:
    """Lock the lane row: the single writer of its nonce cursor until the transaction ends.

    On SQLite every transaction already holds the write lock (BEGIN IMMEDIATE).
    Raises: LaneNotFound.
    """
    lane = await repository.get_lane(session, wallet_id, chain_id, for_update=True)
    if lane is None:
        raise LaneNotFound(f"wallet {wallet_id} was never enabled on chain {chain_id}")
    return lane


async def set_paused_reason(
    session: AsyncSession, wallet_id: uuid.UUID, chain_id: int, reason: str | None
) -> None:
    """Show (or clear, with None) why the engine cannot sign for a lane (`paused_reason`):
    set by every path that signs, drains and the tracker's bumps, cancels and fillers alike;
    never over `nonce_gap` (show_nonce_gaps)."""
    await repository.set_paused_reason(session, wallet_id, chain_id, reason)


async def lanes_showing(session: AsyncSession, chain_id: int, reason: str) -> list[WalletId]:
    """The wallets whose lane on this chain shows `reason` (a paused_reason)."""
    return await repository.lanes_showing(session, chain_id, reason)


async def clear_paused_reason(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID], reason: str
) -> None:
    """Clear `reason` from the lanes of these wallets on every chain, only where it shows."""
    if wallet_ids:
        await repository.clear_paused_reason(session, wallet_ids, reason)


def show_signer_reason(lane: WalletChain, reason: str | None) -> None:
    """set_paused_reason on a lane row the caller holds locked."""
    if lane.paused_reason != NONCE_GAP:
        lane.paused_reason = reason


async def show_nonce_gaps(
    session: AsyncSession,
    chain_id: int,
    *,
    found: Sequence[WalletId],
    cleared: Mapping[WalletId, str | None],
) -> None:
    """Show `nonce_gap` on the `found` lanes, over a signer's reason (the gap needs an
    operator, a signer comes back by itself), and clear it from the `cleared` ones, each
    with the reason it shows in its place: its signer's, when that is still down here (the
    drains left the lane's reason alone while the gap showed), else None. The tracker's
    alone (domain/transactions/track/gaps.py)."""
    await repository.show_nonce_gaps(session, chain_id, found=found)
    for reason in set(cleared.values()):
        lanes = [w for w, shown in cleared.items() if shown == reason]
        await repository.clear_nonce_gaps(session, chain_id, lanes, to=reason)


async def lanes_with_nonce_gap(session: AsyncSession, chain_id: int) -> list[WalletId]:
    """The wallets whose lane on the chain shows `nonce_gap`."""
    return await repository.lanes_showing(session, chain_id, NONCE_GAP)
