"""AWS KMS signing: ECC_SECG_P256K1 keys created by Chainflow or bound by key id, ARN or alias.

Facts this relies on (research/kms-hsm.md §2, checked against LocalStack 4.9.2):
- `Sign` with `MessageType=DIGEST` and `ECDSA_SHA_256` signs the 32 bytes as given (RAW would
  sign sha256(keccak digest), which recovers to a random address); it returns DER, about half
  high-s, with no recovery id: `ecdsa.finish` makes it an Ethereum signature.
- `GetPublicKey` returns a DER SubjectPublicKeyInfo: the curve is checked from its OID
  (1.3.132.0.10), never from `KeySpec` (moto omits it) or `CustomerMasterKeySpec` (LocalStack
  omits that one). It is read once per wallet and process.

Credentials and region come from the standard AWS chain only (environment, shared files,
instance or task role); Chainflow never stores them and never puts an AWS error's message in
its own (only the error code). botocore's own retries are off: throttling and 5xx answers are
retried here with full jitter, after a per-key rate cap; a backend that cannot be reached
raises SignerUnavailable at once, so only the wallets of that backend wait.
"""

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from chainflow.core.settings import Settings
from chainflow.infra.signing.ecdsa import public_key_from_spki, require_digest
from chainflow.infra.signing.remote import RemoteSigner
from chainflow.infra.signing.signer import HEALTHY, SignerHealth, SignerUnavailable

__all__ = [
    "AwsKms",
    "AwsKmsConfig",
    "AwsKmsSigner",
    "KmsKeyNotFound",
    "KmsNotConfigured",
    "WrongKeyUsage",
    "config_from",
]

KEY_SPEC = "ECC_SECG_P256K1"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
_KEY_USAGE = "SIGN_VERIFY"
# Retried with jitter: AWS's throttling codes and its own failures (any 5xx).
_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceeded"}
_BACKOFF_BASE_S = 0.05
_BACKOFF_CAP_S = 2.0
# After KMS could not be reached, calls fail at once for this long: a drain signs its lanes
# under their locks, and must not wait a timeout per KMS wallet, round after round.
DOWN_COOL_OFF_S = 2.0
# A health probe (DescribeKey for the key's state; GetPublicKey where DescribeKey is denied)
# waits at most this long, and its answer is kept this long per key, so probing a lane every
# round costs one KMS call per key every few seconds.
HEALTH_TIMEOUT_S = 2.0
HEALTH_CACHE_S = 5.0
_jitter = secrets.SystemRandom()


class KmsKeyNotFound(LookupError):
    """KMS holds no key by this id, ARN or alias (or this caller may not see it)."""


class WrongKeyUsage(ValueError):
    """The key exists but cannot sign (symmetric, encryption or key agreement only)."""


class KmsNotConfigured(LookupError):
    """No AWS region or no credentials in the standard chain: KMS cannot be used at all."""


@dataclass(frozen=True)
class AwsKmsConfig:
    endpoint_url: str | None  # emulators only (LocalStack); None: AWS's regional endpoint
    timeout_s: float
    max_signs_per_s: float  # per key
    max_retries: int  # of a throttled or 5xx call
    health_cache_s: float = HEALTH_CACHE_S  # how long a health probe's answer is kept


class _RateCap:
    """At most `rate` calls a second: each caller waits for its own slot (no burst)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self) -> None:
        with self._lock:  # API and worker loops of one process may share a key
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class AwsKms:
    """One KMS client per process (boto3 clients are thread-safe), made on first use, and a
    rate cap per key."""

    def __init__(self, config: AwsKmsConfig) -> None:
        self._config = config
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._caps: dict[str, _RateCap] = {}
        self._down_until = 0.0  # time.monotonic() before which KMS is taken as unreachable
        self._health: dict[str, tuple[float, SignerHealth]] = {}  # key → (probed at, answer)
        self._health_client: Any = None
        self._describe_denied = False  # DescribeKey refused: health asks GetPublicKey instead

    def _kms(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client(self._config.timeout_s)
            return self._client

    def _kms_for_health(self) -> Any:
        with self._client_lock:
            if self._health_client is None:
                timeout = min(self._config.timeout_s, HEALTH_TIMEOUT_S)
                self._health_client = self._new_client(timeout)
            return self._health_client

    def _new_client(self, timeout_s: float) -> Any:
        # boto3 is imported on first use: it takes about as long as the rest of the CLI.
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        try:
            return boto3.session.Session().client(
                "kms",
                endpoint_url=self._config.endpoint_url,
                config=Config(
                    connect_timeout=timeout_s,
                    read_timeout=timeout_s,
                    retries={"total_max_attempts": 1},  # retried here, with a cap
                ),
            )
        except NoRegionError:
            raise KmsNotConfigured(
                "no AWS region is configured (AWS_REGION or the AWS config file)"
            ) from None

    def _cap(self, key_id: str) -> _RateCap:
        cap = self._caps.get(key_id)
        if cap is None:
            cap = self._caps.setdefault(key_id, _RateCap(self._config.max_signs_per_s))
        return cap

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One KMS call in a thread, throttling and 5xx retried with full jitter.

        Raises: KmsNotConfigured, KmsKeyNotFound, WrongKeyUsage, SignerUnavailable.
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if time.monotonic() < self._down_until:
            raise SignerUnavailable("AWS KMS could not be reached a moment ago")
        for attempt in range(self._config.max_retries + 1):
            try:
                answer: dict[str, Any] = await asyncio.to_thread(
                    lambda: getattr(self._kms(), operation)(**params)
                )
                return answer
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "unknown"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if (code in _THROTTLED or status >= 500) and attempt < self._config.max_retries:
                    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)
                    await asyncio.sleep(_jitter.uniform(0, ceiling))
                    continue
                raise _client_error(operation, code) from None
            except (NoCredentialsError, PartialCredentialsError):
                raise KmsNotConfigured(
                    "no AWS credentials in the standard chain (environment, shared files, role)"
                ) from None
            except BotoCoreError as exc:  # connection refused, timeout, DNS: the backend is down
                self._down_until = time.monotonic() + DOWN_COOL_OFF_S
                raise SignerUnavailable(
                    f"AWS KMS cannot be reached ({type(exc).__name__})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def create_key(self) -> str:
        """A new ECC_SECG_P256K1 signing key; returns its ARN."""
        answer = await self._call(
            "create_key",
            KeySpec=KEY_SPEC,
            KeyUsage=_KEY_USAGE,
            Description="Chainflow wallet (secp256k1, Ethereum signing)",
            Tags=[{"TagKey": "created-by", "TagValue": "chainflow"}],
        )
        return str(answer["KeyMetadata"]["Arn"])

    async def public_key(self, key_id: str) -> tuple[str, bytes]:
        """(key ARN, 64-byte public key) of a key by id, ARN or alias, its curve and usage
        checked. Raises: KmsKeyNotFound, WrongCurve, WrongKeyUsage, SignerUnavailable."""
        answer = await self._call("get_public_key", KeyId=key_id)
        usage = answer.get("KeyUsage")
        algorithms = answer.get("SigningAlgorithms") or []
        if usage != _KEY_USAGE or SIGNING_ALGORITHM not in algorithms:
            raise WrongKeyUsage(f"KMS key {key_id!r} cannot sign with {SIGNING_ALGORITHM}")
        public_key = public_key_from_spki(bytes(answer["PublicKey"]))
        return str(answer["KeyId"]), public_key

    async def sign(self, key_id: str, digest: bytes) -> bytes:
        """DER signature over the 32-byte digest itself (MessageType=DIGEST).

        Raises: WrongDigestLength, KmsKeyNotFound, WrongKeyUsage, SignerUnavailable.
        """
        require_digest(digest)
        await self._cap(key_id).wait()
        answer = await self._call(
            "sign",
            KeyId=key_id,
            Message=digest,
            MessageType="DIGEST",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )
        return bytes(answer["Signature"])

    async def health(self, key_id: str) -> SignerHealth:
        """Whether KMS answers for this key now, and the key is enabled, within
        HEALTH_TIMEOUT_S, the answer kept `health_cache_s` (a disabled key, or one pending
        deletion, is unhealthy; so is KMS within its cool-off after it could not be reached).
        Never raises."""
        now = time.monotonic()
        cached = self._health.get(key_id)
        if cached is not None and now - cached[0] < self._config.health_cache_s:
            return cached[1]
        if now < self._down_until:
            return SignerHealth(ok=False, detail="AWS KMS could not be reached a moment ago")
        answer = await self._probe(key_id)
        self._health[key_id] = (time.monotonic(), answer)
        return answer

    async def _probe(self, key_id: str) -> SignerHealth:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            state = await asyncio.to_thread(self._key_state, key_id)
        except ClientError as exc:  # KMS answered: the key cannot sign (its code only)
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            return SignerHealth(ok=False, detail=f"AWS KMS refused the key: {code}")
        except KmsNotConfigured as exc:
            return SignerHealth(ok=False, detail=str(exc))
        except (NoCredentialsError, PartialCredentialsError):
            return SignerHealth(ok=False, detail="no AWS credentials in the standard chain")
        except BotoCoreError as exc:  # no answer in time, connection refused
            self._down_until = time.monotonic() + DOWN_COOL_OFF_S
            return SignerHealth(
                ok=False, detail=f"AWS KMS cannot be reached ({type(exc).__name__})"
            )
        self._down_until = 0.0  # it answers: signing may try again at once
        if state not in (None, "Enabled"):
            return SignerHealth(ok=False, detail=f"the KMS key is {state}")
        return HEALTHY

    def _key_state(self, key_id: str) -> str | None:
        """The key's state from DescribeKey (Enabled, Disabled, PendingDeletion, ...); where
        that is denied (the README's policy makes it optional), GetPublicKey, which every
        signing process may call and which AWS refuses for a key that is not enabled: None."""
        from botocore.exceptions import ClientError

        client = self._kms_for_health()
        if not self._describe_denied:
            try:
                metadata = client.describe_key(KeyId=key_id)["KeyMetadata"]
                return str(metadata.get("KeyState") or "Enabled")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "AccessDeniedException":
                    raise
                self._describe_denied = True
        client.get_public_key(KeyId=key_id)
        return None

    def __repr__(self) -> str:
        return f"AwsKms(endpoint_url={self._config.endpoint_url!r})"


def _client_error(operation: str, code: str) -> Exception:
    """An AWS error by its code only: its message may name accounts and roles."""
    if code == "NotFoundException":
        return KmsKeyNotFound("KMS has no such key (or this role may not use it)")
    if code in ("InvalidKeyUsageException", "UnsupportedOperationException"):
        return WrongKeyUsage("the KMS key is not an asymmetric signing key")
    if code in ("InvalidSignatureException", "ValidationException"):
        return SignerUnavailable(f"AWS KMS refused {operation}: {code}")
    # Disabled or pending deletion, access denied, throttled past the retries, KMS failing:
    # the wallet's lane waits until someone fixes the key or its policy.
    return SignerUnavailable(f"AWS KMS {operation} failed: {code}")


class AwsKmsSigner(RemoteSigner):
    """Signs for one KMS key; its public key was read once, when the signer was made."""

    kind = "aws_kms"

    def __init__(self, kms: AwsKms, key_id: str, public_key: bytes) -> None:
        super().__init__(key_id, public_key)
        self._kms = kms

    async def health(self) -> SignerHealth:
        return await self._kms.health(self.key_ref)

    async def _raw_signature(self, digest: bytes) -> bytes:
        try:
            return await self._kms.sign(self.key_ref, digest)
        except (KmsKeyNotFound, WrongKeyUsage, KmsNotConfigured) as exc:
            raise SignerUnavailable(str(exc)) from None


def config_from(settings: Settings) -> AwsKmsConfig:
    """KMS settings; region and credentials are read by boto3 from the standard chain."""
    return AwsKmsConfig(
        endpoint_url=settings.aws_kms_endpoint_url,
        timeout_s=settings.aws_kms_timeout_s,
        max_signs_per_s=settings.aws_kms_max_signs_per_s,
        max_retries=settings.aws_kms_max_retries,
    )
