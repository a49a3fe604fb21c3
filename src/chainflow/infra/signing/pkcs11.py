"""PKCS#11 signing (SoftHSM2 in tests): keys generated in the token or found by label.

PyKCS11 rather than python-pkcs11 (research/kms-hsm.md §1): python-pkcs11 initialises the
module without OS locking, and two threads signing with SoftHSM failed with CKR_GENERAL_ERROR;
PyKCS11 ran 1-4 threads cleanly at about the same rate (~1,600-1,900 signs/s). Every call
still goes through one lock per token: the login is per application, not per session, and one
session serialises the calls anyway on a 2-core machine.

After any module error the library is finalised and loaded again on the next call: a token
that was removed and put back is not seen by the running module otherwise (measured: reopening
a session gave CKR_GENERAL_ERROR until C_Finalize / C_Initialize).
"""

import asyncio
import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import PyKCS11

from chainflow.core.errors import ConfigError
from chainflow.core.redaction import scrub_text
from chainflow.core.settings import Settings
from chainflow.core.types import SecretBytes
from chainflow.infra.files import read_text_file
from chainflow.infra.signing.ecdsa import (
    WrongCurve,
    public_key_from_point,
    require_digest,
)
from chainflow.infra.signing.remote import RemoteSigner
from chainflow.infra.signing.signer import HEALTHY, SignerHealth, SignerUnavailable

__all__ = [
    "HEALTH_CACHE_S",
    "HEALTH_TIMEOUT_S",
    "KeyNotFound",
    "Pkcs11Config",
    "Pkcs11Signer",
    "Pkcs11Token",
    "config_from",
]

HEALTH_TIMEOUT_S = 2.0  # a health search that takes longer answers "unhealthy"
HEALTH_CACHE_S = 5.0  # how long a health answer is kept (as AWS KMS's)

# DER of the secp256k1 OID 1.3.132.0.10, the only CKA_EC_PARAMS accepted.
SECP256K1_PARAMS = bytes.fromhex("06052b8104000a")
_LABEL_PREFIX = "chainflow-"


# The most of a key label an error shows: the API's bound on `key_label`
# (domain/wallets/schemas.py).
LABEL_SHOWN_MAX = 200


class KeyNotFound(LookupError):
    """No private key with this label in the token."""


@dataclass(frozen=True)
class Pkcs11Config:
    module: str
    token_label: str
    pin: SecretBytes

    def __repr__(self) -> str:
        return f"Pkcs11Config(module={self.module!r}, token_label={self.token_label!r})"

    __str__ = __repr__


class _Connection:
    """The loaded module, one logged-in session and the key handles found in it."""

    def __init__(self, config: Pkcs11Config) -> None:
        self.lib = PyKCS11.PyKCS11Lib()
        self.lib.load(config.module)
        try:
            self.session = self._open(config)
        except BaseException:
            # Unloaded now, not when the collector gets to it: PyKCS11 finalises a module only
            # when its last user unloads it, and a token put back is seen only after that.
            self.lib.unload()
            raise
        self.keys: dict[str, Any] = {}

    def _open(self, config: Pkcs11Config) -> Any:
        slot = self._slot(config.token_label)
        session = self.lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        try:
            session.login(config.pin.reveal().decode())
        except PyKCS11.PyKCS11Error as exc:
            if exc.value != PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return session

    def _slot(self, token_label: str) -> int:
        # SoftHSM reassigns slot ids at random: always look the token up by its label.
        for slot in self.lib.getSlotList(tokenPresent=True):
            if str(self.lib.getTokenInfo(slot).label).strip() == token_label:
                return int(slot)
        raise SignerUnavailable(f"PKCS#11 token {token_label!r} is not present")

    def close(self) -> None:
        # The module may be failing already: nothing more to release in it then.
        with contextlib.suppress(PyKCS11.PyKCS11Error):
            self.session.closeSession()
        self.lib.unload()


class Pkcs11Token:
    """One token of one module, shared by every wallet whose key it holds (one per process)."""

    def __init__(self, config: Pkcs11Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        # probe(): the last answer per key label, and the search in flight per label.
        self._health: dict[str, tuple[float, SignerHealth]] = {}
        self._searches: dict[str, asyncio.Future[SignerHealth]] = {}

    @property
    def token_label(self) -> str:
        return self._config.token_label

    def _call(self, work: Any) -> Any:
        """Run `work(connection)` under the lock; a module error drops the connection and
        raises SignerUnavailable (its message carries the CKR name only, never the PIN)."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = _Connection(self._config)
                return work(self._connection)
            except PyKCS11.PyKCS11Error as exc:
                self._drop()
                raise SignerUnavailable(
                    f"PKCS#11 token {self._config.token_label!r} failed: "
                    f"{PyKCS11.CKR.get(exc.value, hex(exc.value))}"
                ) from None
            except SignerUnavailable:
                self._drop()
                raise
            except OSError as exc:  # the module file cannot be loaded
                self._drop()
                raise SignerUnavailable(f"PKCS#11 module cannot be loaded: {exc}") from None

    def _drop(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            # Finalising a failing module may fail too: the next load starts clean anyway.
            with contextlib.suppress(PyKCS11.PyKCS11Error):
                connection.close()

    def generate(self) -> tuple[str, bytes]:
        """A new non-extractable secp256k1 key pair in the token: (label, public key)."""
        label = f"{_LABEL_PREFIX}{uuid.uuid4().hex}"
        public_key: bytes = self._call(lambda c: _generate(c, label))
        return label, public_key

    def public_key(self, label: str) -> bytes:
        """The 64-byte public key of the private key labelled `label`.

        Raises: KeyNotFound, WrongCurve, SignerUnavailable.
        """
        found: bytes = self._call(lambda c: _public_key(c, label))
        return found

    def sign(self, label: str, digest: bytes) -> bytes:
        """Raw r || s (64 bytes) over a 32-byte digest with CKM_ECDSA (never a hashing
        mechanism: it would sign sha256(digest)). Raises: WrongDigestLength, KeyNotFound,
        SignerUnavailable."""
        require_digest(digest)  # SoftHSM silently truncates or pads other lengths
        signature: bytes = self._call(lambda c: _sign(c, label, digest))
        return signature

    def health(self, label: str) -> SignerHealth:
        """Whether the token is present and holds the private key `label`: one object search
        in the logged-in session. Never raises. A token removed shows as a missing key or a
        failing call to the running module, and one put back is seen only after the module
        is loaded again: so a failed search on a connection made earlier drops it and is
        tried once more on a fresh one."""
        detail = ""
        for _ in range(2):
            is_fresh = self._connection is None
            try:
                self._call(lambda c: _find(c, label, PyKCS11.CKO_PRIVATE_KEY))
                return HEALTHY
            except SignerUnavailable as exc:  # the connection was dropped already
                detail = str(exc)
            except KeyNotFound as exc:
                with self._lock:
                    self._drop()
                detail = str(exc)
            if is_fresh:
                break
        return SignerHealth(ok=False, detail=detail)

    async def probe(self, label: str) -> SignerHealth:
        """`health` for the event loop, bounded: the answer is kept HEALTH_CACHE_S, one search
        runs per label at a time, and a token that has not answered within HEALTH_TIMEOUT_S is
        unhealthy (a wedged module holds its thread, never the caller). A lane read by any
        `read` key asks this, so no request can make the API search the token, or reload its
        module, more than once per label every few seconds. Never raises."""
        cached = self._health.get(label)
        if cached is not None and time.monotonic() - cached[0] < HEALTH_CACHE_S:
            return cached[1]
        search = self._searches.get(label)
        if search is None:
            search = asyncio.ensure_future(asyncio.to_thread(self.health, label))
            search.set_name(f"pkcs11.search:{_shown(label)}")  # a task repr may be logged
            self._searches[label] = search
            search.add_done_callback(lambda _: self._searches.pop(label, None))
        try:
            answer = await asyncio.wait_for(asyncio.shield(search), HEALTH_TIMEOUT_S)
        except TimeoutError:
            answer = SignerHealth(
                ok=False, detail=f"the PKCS#11 token did not answer in {HEALTH_TIMEOUT_S:g} s"
            )
        self._health[label] = (time.monotonic(), answer)
        return answer

    def close(self) -> None:
        with self._lock:
            self._drop()

    async def aclose(self) -> None:
        """`close` once the searches of `probe` have ended (each is bounded by
        HEALTH_TIMEOUT_S); the module call of a wedged token is left to its thread."""
        searches = list(self._searches.values())
        if searches:
            await asyncio.wait(searches, timeout=HEALTH_TIMEOUT_S)
        for search in searches:
            search.cancel()  # still wedged: its answer is not awaited (the thread runs on)
        self.close()

    def __repr__(self) -> str:
        return f"Pkcs11Token(token_label={self._config.token_label!r})"


def _generate(connection: _Connection, label: str) -> bytes:
    common = [
        (PyKCS11.CKA_TOKEN, True),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, label.encode()),
    ]
    public_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
        (PyKCS11.CKA_VERIFY, True),
        (PyKCS11.CKA_EC_PARAMS, SECP256K1_PARAMS),
        *common,
    ]
    private_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
        (PyKCS11.CKA_PRIVATE, True),
        (PyKCS11.CKA_SENSITIVE, True),
        (PyKCS11.CKA_EXTRACTABLE, False),
        (PyKCS11.CKA_SIGN, True),
        *common,
    ]
    public, private = connection.session.generateKeyPair(
        public_template,
        private_template,
        mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None),
    )
    connection.keys[label] = private
    return _point_of(connection, public)


def _shown(label: str) -> str:
    """A key label as an error shows it (signer_key_not_found echoes it): cut to the API's
    bound on `key_label`, so a label given on the command line (unbounded) cannot make an
    error, a log line or a response carry more."""
    # Scrubbed before it is cut: a key pasted as a label and cut mid-way is no longer
    # key-shaped, and the later scrub of the whole message missed it (review: 63 of its 64
    # hex digits reached stderr).
    length, label = len(label), scrub_text(label)
    if len(label) <= LABEL_SHOWN_MAX:
        return repr(label)
    return f"{label[:LABEL_SHOWN_MAX]!r}… ({length} characters)"


def _find(connection: _Connection, label: str, key_class: int) -> Any:
    found = connection.session.findObjects(
        [(PyKCS11.CKA_CLASS, key_class), (PyKCS11.CKA_LABEL, label)]
    )
    if not found:
        raise KeyNotFound(f"no key labelled {_shown(label)} in the token")
    return found[0]


def _public_key(connection: _Connection, label: str) -> bytes:
    private = _find(connection, label, PyKCS11.CKO_PRIVATE_KEY)
    (key_type,) = connection.session.getAttributeValue(private, [PyKCS11.CKA_KEY_TYPE])
    if key_type != PyKCS11.CKK_EC:
        raise WrongCurve(f"the key labelled {_shown(label)} is not an EC key")
    (params,) = connection.session.getAttributeValue(
        private, [PyKCS11.CKA_EC_PARAMS], allAsBinary=True
    )
    if bytes(params) != SECP256K1_PARAMS:
        raise WrongCurve(f"the key labelled {_shown(label)} is not a secp256k1 key")
    public = _find(connection, label, PyKCS11.CKO_PUBLIC_KEY)
    connection.keys[label] = private
    return _point_of(connection, public)


def _point_of(connection: _Connection, public: Any) -> bytes:
    (point,) = connection.session.getAttributeValue(
        public, [PyKCS11.CKA_EC_POINT], allAsBinary=True
    )
    return public_key_from_point(bytes(point))


def _sign(connection: _Connection, label: str, digest: bytes) -> bytes:
    key = connection.keys.get(label)
    if key is None:
        key = connection.keys[label] = _find(connection, label, PyKCS11.CKO_PRIVATE_KEY)
    mechanism = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None)
    return bytes(connection.session.sign(key, digest, mechanism))


class Pkcs11Signer(RemoteSigner):
    """Signs for one key of a token; the public key is read once, at construction."""

    kind = "pkcs11"

    def __init__(self, token: Pkcs11Token, label: str, public_key: bytes) -> None:
        super().__init__(label, public_key)
        self._token = token

    async def health(self) -> SignerHealth:
        return await self._token.probe(self.key_ref)

    async def _raw_signature(self, digest: bytes) -> bytes:
        try:
            return await asyncio.to_thread(self._token.sign, self.key_ref, digest)
        except KeyNotFound as exc:  # the key was deleted from the token
            raise SignerUnavailable(str(exc)) from None


def config_from(settings: Settings) -> Pkcs11Config | None:
    """The PKCS#11 configuration, or None when no module is configured.

    Raises: ConfigError naming the missing setting (never the PIN).
    """
    if settings.pkcs11_module is None:
        return None
    if settings.pkcs11_token_label is None:
        raise ConfigError("CHAINFLOW_PKCS11_TOKEN_LABEL is required with CHAINFLOW_PKCS11_MODULE")
    if settings.pkcs11_pin is not None:
        pin = settings.pkcs11_pin.get_secret_value()
    elif settings.pkcs11_pin_file is not None:
        text = read_text_file(settings.pkcs11_pin_file, what="PKCS#11 PIN", max_bytes=1024)
        pin = text.splitlines()[0].strip() if text.strip() else ""
    else:
        raise ConfigError("set CHAINFLOW_PKCS11_PIN or CHAINFLOW_PKCS11_PIN_FILE")
    if not pin:
        raise ConfigError("the PKCS#11 PIN is empty")
    return Pkcs11Config(
        module=settings.pkcs11_module,
        token_label=settings.pkcs11_token_label,
        pin=SecretBytes(pin.encode()),
    )
