"""Chain set-up for tests: the local anvil chain registered in a test database."""

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.chains.models import Chain, RpcEndpoint

ANVIL_CHAIN_ID = 31337


async def add_anvil_chain(
    session: AsyncSession, url: str, *, chain_id: int = ANVIL_CHAIN_ID
) -> Chain:
    """Register a chain pointing at a running anvil, without going through verification."""
    chain = Chain(
        chain_id=chain_id,
        name="Anvil (test)",
        native_symbol="ETH",
        eip1559=True,
        confirmations=2,
        block_time_s=1,
        enabled=True,
        rpc_endpoints=[RpcEndpoint(url=url, position=0, weight=1)],
    )
    session.add(chain)
    await session.flush()
    return chain
