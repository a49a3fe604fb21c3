"""The benchmark counts the CPU of the PostgreSQL and Redis it runs against, and only theirs."""

import psutil
from bench.cluster import server_pids


async def test_the_servers_are_the_ones_the_benchmark_talks_to() -> None:
    """Found by name when the listener could not be seen, every PostgreSQL on the host was
    counted (a private server's too), with the first one's children reaped since it started."""
    pids = await server_pids()

    postmaster = psutil.Process(pids["postgres"])
    assert postmaster.name().startswith("postgres")
    assert postmaster.ppid() == 1 or not psutil.Process(postmaster.ppid()).name().startswith(
        "postgres"
    )
    assert any(
        c.status == psutil.CONN_LISTEN and c.laddr[1] == 5432
        for c in postmaster.net_connections("tcp")
    )
    assert psutil.Process(pids["redis"]).name().startswith("redis")
