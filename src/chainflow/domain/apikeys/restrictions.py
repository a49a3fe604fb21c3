"""Build the restrictions of an API key (core/restrictions.py) and store them (issue 21)."""

import uuid
from collections.abc import Iterable

from chainflow.core.restrictions import UNRESTRICTED as UNRESTRICTED
from chainflow.core.restrictions import KeyRestricted as KeyRestricted
from chainflow.core.restrictions import Restrictions
from chainflow.domain.apikeys.models import ApiKey


def restrictions_of(key: ApiKey) -> Restrictions:
    wallets = None if key.wallet_ids is None else frozenset(uuid.UUID(w) for w in key.wallet_ids)
    chains = None if key.chain_ids is None else frozenset(int(c) for c in key.chain_ids)
    return Restrictions(wallets, chains)


def stored_wallet_ids(wallet_ids: Iterable[uuid.UUID]) -> list[str] | None:
    listed = sorted({str(w) for w in wallet_ids})
    return listed or None


def stored_chain_ids(chain_ids: Iterable[int]) -> list[int] | None:
    listed = sorted(set(chain_ids))
    return listed or None
