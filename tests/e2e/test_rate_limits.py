"""A key's rate limit holds across two real API processes sharing Redis: a client that
sends as fast as it can, alternating between them, gets the key's rate admitted in total
(plus the burst), the rest 429 with Retry-After; another key is unaffected (issue 21)."""

import asyncio
import base64
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from chainflow.domain.apikeys.service import KeyLimits, create_api_key
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.support.databases import REDIS_URL
from tests.support.processes import base_env, listening_port, processes, wait_http

# CHAINFLOW_RATE_LIMIT_BURST_S: half a second of the rate. The bucket holds no more, so a pause
# of the senders longer than this (a loaded CI machine) loses tokens: at 0.1 s the admitted
# count fell under 75 % of the rate in a CI run (49 of 66 in 3.3 s, 2,446 refused). A second
# process counting on its own would still admit about twice the rate, far above the bound.
BURST_S = 0.5


async def make_keys(url: str, rate_per_s: float) -> tuple[str, str]:
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            _, limited = await create_api_key(
                session, ["read"], limits=KeyLimits(rate_per_s=rate_per_s)
            )
            _, other = await create_api_key(
                session, ["read"], limits=KeyLimits(rate_per_s=rate_per_s)
            )
        return limited, other
    finally:
        await engine.dispose()


async def flood(
    bases: list[str], token: str, *, seconds: float
) -> tuple[int, list[aiohttp.ClientResponse], float]:
    """8 concurrent senders for `seconds`, alternating processes: admitted count, 429s, the
    time from the first request sent to the last answer."""
    headers = {"Authorization": f"Bearer {token}"}
    admitted, refused = 0, []
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as http:

        async def sender(index: int) -> None:
            nonlocal admitted
            sent = index
            while loop.time() - started < seconds:
                async with http.get(f"{bases[sent % 2]}/v1/chains", headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        admitted += 1
                    else:
                        assert response.status == 429, response.status
                        refused.append(response)
                sent += 1

        await asyncio.gather(*(sender(i) for i in range(8)))
    return admitted, refused, loop.time() - started


class TestAcrossProcesses:
    @pytest.mark.timeout(180)
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    @pytest.mark.parametrize(
        ("rate_per_s", "seconds"),
        [
            (20.0, 3.0),  # CI
            # The figures: 50 req/s for 10 s (scripts/chaos).
            pytest.param(50.0, 10.0, marks=pytest.mark.chaos_full),
        ],
    )
    async def test_two_processes_share_one_limit(
        self, database_url: str, tmp_path: Path, rate_per_s: float, seconds: float
    ) -> None:
        master = MasterKey.generate()
        burst = max(1, int(rate_per_s * BURST_S))
        limited, other = await make_keys(database_url, rate_per_s)
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        await redis.aclose()
        env = base_env(
            database_url=database_url,
            redis_url=REDIS_URL,
            master_key=base64.b64encode(master.secret.reveal()).decode(),
            rate_limit_burst_s=str(BURST_S),
            # Long enough that Redis always answers on a loaded test machine: this measures the
            # shared limit, not the per-process fallback (tests/integration/ratelimit).
            rate_limit_redis_timeout_s="2",
            log_level="warning",
        )
        commands = [["api", "--port", "0"], ["api", "--port", "0"]]
        with processes(commands, env, tmp_path) as started:
            ports = [listening_port(process) for process in started]
            for port, process in zip(ports, started, strict=True):
                wait_http(f"http://127.0.0.1:{port}/healthz", process)
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            admitted, refused, elapsed = await flood(bases, limited, seconds=seconds)
            most = rate_per_s * elapsed + burst
            seen = (admitted, len(refused), elapsed)
            assert len(refused) > admitted, seen  # the client really sent faster than the limit
            # Never above the rate; at least 75 % of it (answers stall on a loaded machine).
            assert rate_per_s * elapsed * 0.75 <= admitted <= most, seen
            assert {r.headers["Retry-After"] for r in refused} == {"1"}  # 50 ms, in whole s
            assert {r.headers["RateLimit-Limit"] for r in refused} == {str(burst)}
            other_answers, _, _ = await flood(bases, other, seconds=0.3)
            assert other_answers >= burst  # its own bucket is full
