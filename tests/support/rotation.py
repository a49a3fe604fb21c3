"""What the master-key rotation tests share: running `chainflow`, making wallets, proving
that every wallet still decrypts and signs as itself."""

import asyncio
import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from sqlalchemy import select

from chainflow.core.settings import Settings
from chainflow.domain.master_key import check_master_key, foreign_key_ids
from chainflow.domain.wallets import service
from chainflow.domain.wallets.custody import signer_for
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from tests.support.processes import CHAINFLOW

TX = {
    "type": 2,
    "chainId": 31337,
    "nonce": 0,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
    "data": b"",
}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one `error:` line of a refused command (exit 1, no traceback)."""
        assert self.code == 1, (self.code, self.stdout, self.stderr)
        lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


async def chainflow(env: dict[str, str], *args: str, stdin: str = "") -> Ran:
    """Run `chainflow …` to its end (or its SIGKILL) off the event loop."""
    result = await asyncio.to_thread(
        subprocess.run,
        [CHAINFLOW, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    return Ran(result.returncode, result.stdout, result.stderr)


def key_text(key: MasterKey) -> str:
    return base64.b64encode(key.secret.reveal()).decode()


def write_key(path: Path, key: MasterKey) -> Path:
    path.write_text(key_text(key) + "\n")
    return path


async def make_wallets(url: str, master: MasterKey, n: int) -> None:
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            for _ in range(n):
                await service.import_wallet(
                    session, generate_private_key(), master=master, sealed_rows=foreign_key_ids
                )
    finally:
        await engine.dispose()


async def key_ids(url: str) -> dict[str, str]:
    """The master key id each wallet row names, by address."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            rows = (await session.execute(select(Wallet.address, Wallet.master_key_id))).all()
    finally:
        await engine.dispose()
    return {str(address): str(key_id) for address, key_id in rows}


async def every_wallet_signs(url: str, master: MasterKey) -> int:
    """Check the keys like a starting process, then decrypt every wallet and sign with it;
    return how many signed as themselves."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await check_master_key(session, master=master)
            wallets = (await session.scalars(select(Wallet))).all()
    finally:
        await engine.dispose()
    for wallet in wallets:
        signed = await signer_for(wallet, master=master).sign_transaction(TX)
        assert Account.recover_transaction(signed.raw) == wallet.address
    return len(wallets)


def embedded_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, master_key=None, redis_url=None, database_url=None)
