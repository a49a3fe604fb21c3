"""A Redis worker process that takes one job, says so in a marker file, and hangs until killed.

Run by the JobQueue contract test: `python -m tests.contracts.queue_worker URL PREFIX QUEUE MARKER`.
"""

import argparse
import asyncio
from pathlib import Path

from chainflow.infra.queue import Job, RedisJobQueue


async def work(url: str, prefix: str, queue: str, marker: Path) -> None:
    """Consume `queue`; the handler writes the job key to `marker`, then never returns."""
    job_queue = RedisJobQueue(url, prefix=prefix)

    async def hang(job: Job) -> None:
        marker.write_text(job.key)
        await asyncio.Event().wait()

    await job_queue.run_worker([queue], hang, concurrency=1, stop=asyncio.Event())


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "prefix", "queue", "marker"):
        parser.add_argument(name)
    args = parser.parse_args()
    asyncio.run(work(args.url, args.prefix, args.queue, Path(args.marker)))


if __name__ == "__main__":
    main()
