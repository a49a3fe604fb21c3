"""Event type filters: parsing, and the fan-out's match agreeing with the SQL glob."""

import uuid
from types import SimpleNamespace

import pytest

from chainflow.core.types import ChainId, WalletId
from chainflow.domain.events.service import EventFilter, InvalidEventTypes, parse_types


class TestParseTypes:
    @pytest.mark.parametrize(
        ("text", "patterns"),
        [
            (None, ()),
            ("", ()),
            ("transaction.*", ("transaction.*",)),
            (
                " transaction.confirmed , wallet.low_balance ,",
                ("transaction.confirmed", "wallet.low_balance"),
            ),
            ("a,a,b", ("a", "b")),
        ],
    )
    def test_a_comma_list_of_patterns(self, text: str | None, patterns: tuple[str, ...]) -> None:
        assert parse_types(text) == patterns

    @pytest.mark.parametrize(
        "text",
        ["Transaction.*", "transaction.%", "a b", "x" * 65, ",".join(f"t{i}" for i in range(21))],
    )
    def test_refuses_what_is_not_a_type_glob(self, text: str) -> None:
        with pytest.raises(InvalidEventTypes):
            parse_types(text)


def event(type_: str, wallet: uuid.UUID | None = None, chain: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(type=type_, wallet_id=wallet, chain_id=chain)


class TestMatches:
    @pytest.mark.parametrize(
        ("patterns", "type_", "matched"),
        [
            ((), "anything", True),
            (("transaction.*",), "transaction.confirmed", True),
            (("transaction.*",), "transactions.x", False),
            (("*.low_balance",), "wallet.low_balance", True),
            (("transaction.conf*",), "transaction.confirmed", True),
            (("transaction.confirmed",), "transaction.confirmedx", False),
            (("transaction_x",), "transactionax", False),  # `_` is no wildcard
            (("a*b*c",), "aXbYc", True),
            (("a*b*c",), "aXcYb", False),
        ],
    )
    def test_globs(self, patterns: tuple[str, ...], type_: str, matched: bool) -> None:
        assert EventFilter(types=patterns).matches(event(type_)) is matched  # type: ignore[arg-type]

    def test_wallet_and_chain(self) -> None:
        wallet = WalletId(uuid.uuid4())
        where = EventFilter(wallet_id=wallet, chain_id=ChainId(5))
        assert where.matches(event("t", wallet, 5))  # type: ignore[arg-type]
        assert not where.matches(event("t", wallet, 6))  # type: ignore[arg-type]
        assert not where.matches(event("t", uuid.uuid4(), 5))  # type: ignore[arg-type]
