"""What a restricted API key may reach: some wallets, some chains (issue 21).

A request outside them is refused 403 `key_restricted`, with the same answer whether the
other wallet exists or not, so a key learns nothing of what it cannot reach. A value here,
checked by the features (which cannot import the API keys feature), built by
`domain/apikeys/restrictions.py`.
"""

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from chainflow.core.errors import Forbidden


class KeyRestricted(Forbidden):
    code = "key_restricted"
    title = "Outside this API key's restrictions"


@dataclass(frozen=True)
class Restrictions:
    """None: every wallet (chain); else only those listed."""

    wallet_ids: frozenset[uuid.UUID] | None = None
    chain_ids: frozenset[int] | None = None

    @property
    def is_restricted(self) -> bool:
        return self.wallet_ids is not None or self.chain_ids is not None

    def check_chain(self, chain_id: int) -> None:
        if self.chain_ids is not None and chain_id not in self.chain_ids:
            raise KeyRestricted(f"this API key is limited to other chains than {chain_id}")

    def check_wallet(self, wallet_id: uuid.UUID | None) -> None:
        """`None`: a wallet that does not exist, refused like any other outside the list."""
        if self.wallet_ids is not None and wallet_id not in self.wallet_ids:
            raise KeyRestricted("this API key is limited to other wallets")

    def check_reach(self, wallet_id: uuid.UUID, chain_id: int) -> None:
        """Refuse a stored resource (a transaction) of a wallet or chain outside the lists."""
        self.check_wallet(wallet_id)
        self.check_chain(chain_id)

    def check_on_its_chains(self, chain_ids: Collection[int] | None) -> None:
        """Refuse a wallet enabled on none of the key's chains (`chain_ids`: the chains it is
        enabled on; None: a wallet that does not exist), the same answer either way."""
        if self.chain_ids is not None and (
            chain_ids is None or self.chain_ids.isdisjoint(chain_ids)
        ):
            raise KeyRestricted("this API key is limited to chains this wallet is not on")

    def check_every_chain(self, action: str) -> None:
        """Refuse a change to a whole wallet (its status, label, spending policy) to a key
        limited to some chains: the change governs the wallet on every chain, its others too."""
        if self.chain_ids is not None:
            raise KeyRestricted(
                f"a key limited to some chains cannot {action}: it applies to the wallet on "
                "every chain, not only this key's"
            )

    def visible_chains(self, chain_ids: Iterable[int]) -> list[int]:
        """Those of `chain_ids` this key may see, in their order."""
        return [c for c in chain_ids if self.chain_ids is None or c in self.chain_ids]

    def check_unrestricted(self, action: str) -> None:
        """Refuse what only a key that reaches everything may do (create wallets, chains)."""
        if self.is_restricted:
            raise KeyRestricted(f"a key limited to some wallets or chains cannot {action}")


UNRESTRICTED = Restrictions()
