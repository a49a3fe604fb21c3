"""A SoftHSM2 token per test session, in a temporary folder (no root-owned state, no daemon).

SoftHSM reads SOFTHSM2_CONF when the module is initialised, so the variable is set for the
whole test process (and inherited by the processes tests start). A missing softhsm2 fails the
tests that need it: scripts/bootstrap installs it, as it installs anvil.
"""

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import PyKCS11
import pytest

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.pkcs11 import Pkcs11Config

MODULE = os.environ.get("CHAINFLOW_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
PIN = "4711-test"
SO_PIN = "5678-test"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    tokens: Path
    token_label: str
    pin_file: Path

    @property
    def config(self) -> Pkcs11Config:
        return Pkcs11Config(
            module=MODULE, token_label=self.token_label, pin=SecretBytes(PIN.encode())
        )

    def env(self) -> dict[str, str]:
        """Settings for a Chainflow process using this token (the PIN by file)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "CHAINFLOW_PKCS11_MODULE": MODULE,
            "CHAINFLOW_PKCS11_TOKEN_LABEL": self.token_label,
            "CHAINFLOW_PKCS11_PIN_FILE": str(self.pin_file),
        }


TOKEN_LABEL = "chainflow-test"


def start_softhsm(folder: Path, token_label: str = TOKEN_LABEL) -> SoftHsm:
    util = shutil.which("softhsm2-util")
    if util is None or not Path(MODULE).is_file():
        pytest.fail("softhsm2 is not installed: run ./scripts/bootstrap (it installs softhsm2)")
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        "slots.mechanisms = ALL\n"
        "library.reset_on_fork = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", token_label, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    pin_file = folder / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    return SoftHsm(conf=conf, tokens=tokens, token_label=token_label, pin_file=pin_file)


def user_session(softhsm: SoftHsm, *, rw: bool = False) -> "PyKCS11.Session":
    """A logged-in session opened with PyKCS11 directly (tests that act beside Chainflow)."""
    lib = PyKCS11.PyKCS11Lib()
    lib.load(MODULE)
    slot = next(
        s
        for s in lib.getSlotList(tokenPresent=True)
        if str(lib.getTokenInfo(s).label).strip() == softhsm.token_label
    )
    flags = PyKCS11.CKF_SERIAL_SESSION | (PyKCS11.CKF_RW_SESSION if rw else 0)
    session = lib.openSession(slot, flags)
    # The login is per application: another session of this process may hold it already.
    with contextlib.suppress(PyKCS11.PyKCS11Error):
        session.login(PIN)
    return session
