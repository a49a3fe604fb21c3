"""Settings from the environment (`CHAINFLOW_` prefix), validated once at start."""

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chainflow.core.crashpoints import parse_crash_at
from chainflow.core.errors import ConfigError
from chainflow.core.schedule import parse_retry_schedule

DEFAULT_DATA_DIR = Path(".chainflow")


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class Settings(BaseSettings):
    """Every knob of a Chainflow process; see README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="CHAINFLOW_", extra="ignore", frozen=True)

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Embedded database, master key, anvil")
    database_url: str | None = Field(None, description="postgresql://… or sqlite:///…")
    redis_url: str | None = Field(None, description="unset: embedded in-process queue")
    master_key: SecretStr | None = Field(None, description="base64 of 32 random bytes")
    chains_file: Path | None = Field(None, description="YAML chain registry seed")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_key_cache_s: float = Field(5.0, ge=0, le=300, description="0 disables")
    api_max_in_flight: int = Field(128, ge=1, le=100_000)
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "info"
    rpc_timeout_s: float = Field(10.0, gt=0)
    max_in_flight_per_lane: int = Field(64, ge=1, le=10_000)
    gas_buffer_percent: int = Field(20, ge=0, le=500)
    min_tip_wei: int = Field(1_000_000_000, ge=0)
    stuck_after_blocks: int = Field(3, ge=1)
    stuck_after_s: float = Field(30.0, gt=0)
    resend_after_s: float = Field(10.0, gt=0)
    foreign_nonce_grace_s: float = Field(30.0, gt=0)
    stranded_after_s: float = Field(2.0, gt=0)
    stranded_held_after_s: float = Field(0.5, gt=0)
    bump_percent: float = Field(12.5, ge=10, le=1000)
    worker_poll_s: float = Field(0.1, gt=0, le=60)
    test_crash_at: str | None = Field(None, description="chaos tests only: crash point[:n]")
    # key custody: master-key rotation (issue 14)
    master_key_previous: SecretStr | None = Field(
        None, description="base64; the key CHAINFLOW_MASTER_KEY replaced, for unfinished rotations"
    )
    key_rotation_batch_size: int = Field(500, ge=1, le=100_000, description="rows per commit")
    # RPC URLs (issue 14): SSRF guard and answer size; `chainflow dev` allows private hosts
    rpc_allow_private_urls: bool = Field(
        False, description="allow RPC URLs on loopback, private, link-local, … hosts"
    )
    rpc_max_response_bytes: int = Field(
        16 * 1024 * 1024, ge=65_536, le=1024**3, description="largest JSON-RPC answer read"
    )
    # fee caps (issue 14): how long a signed request priced out by the base fee may hold its lane
    fee_cap_wait_s: float = Field(600.0, gt=0, le=30 * 86_400)
    # HTTP edge (issue 14): request body sizes per route and the deadline to receive one
    api_max_body_bytes: int = Field(65_536, ge=1024, description="any route not listed below")
    api_max_tx_body_bytes: int = Field(524_288, ge=1024, description="POST /v1/transactions")
    api_max_batch_body_bytes: int = Field(
        4_194_304, ge=1024, description="POST /v1/transactions/batch"
    )
    api_body_timeout_s: float = Field(10.0, gt=0, le=600, description="whole body, from headers")
    api_header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="request line and headers, from their first byte"
    )
    # signers (issue 20): PKCS#11 module and token, AWS KMS endpoint (emulators); PIN never logged
    pkcs11_module: str | None = Field(None, description="path of the PKCS#11 module (.so)")
    pkcs11_token_label: str | None = Field(None, description="label of the token holding keys")
    pkcs11_pin: SecretStr | None = Field(None, description="user PIN; or CHAINFLOW_PKCS11_PIN_FILE")
    pkcs11_pin_file: Path | None = Field(None, description="file whose first line is the PIN")
    aws_kms_endpoint_url: str | None = Field(None, description="KMS endpoint (emulators only)")
    # observability (issue 18): GET /metrics takes this Bearer token when set
    metrics_token: SecretStr | None = Field(None, description="unset: /metrics needs no auth")
    metrics_cache_s: float = Field(5.0, ge=0, le=300, description="lanes read at most this often")
    metrics_enabled: bool = Field(True, description="false: no instrumentation, no /metrics")
    # webhooks (issue 16): retries over about 28 hours, SSRF guard, secret rotation overlap
    webhook_retry_schedule: str = Field(
        "5,300,1800,7200,18000,36000,36000",
        max_length=2000,
        description="seconds between attempts, comma-separated; the last one fails for good",
    )
    webhook_disable_after_s: float = Field(
        5 * 86_400, gt=0, le=365 * 86_400, description="an endpoint failing everything this long"
    )
    webhook_allow_private_urls: bool = Field(
        False, description="allow webhook URLs on loopback, private, link-local, … hosts"
    )
    webhook_secret_overlap_s: float = Field(
        86_400, ge=0, le=30 * 86_400, description="the old secret also signs after a rotation"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="one delivery attempt")
    webhook_concurrency: int = Field(32, ge=1, le=1024, description="deliveries in flight")
    # events: the outbox, its API and stream (issue 16)
    event_retention_days: float = Field(
        30, gt=0, le=3650, description="events older than this are pruned by the workers"
    )
    event_stream_max_clients: int = Field(
        100, ge=1, le=10_000, description="concurrent /v1/events/stream clients per API process"
    )
    event_poll_s: float = Field(
        0.25, gt=0, le=10, description="how often sequencer and stream poll the outbox"
    )
    # AWS KMS signer (issue 20): region and credentials come from the standard AWS chain only
    aws_kms_timeout_s: float = Field(
        5.0, gt=0, le=60, description="connect and read timeout of one KMS call"
    )
    aws_kms_max_signs_per_s: float = Field(
        50.0, gt=0, le=10_000, description="Sign calls per second per KMS key (a rate cap)"
    )
    aws_kms_max_retries: int = Field(
        4, ge=0, le=10, description="retries of a throttled or 5xx KMS call, with jitter"
    )
    # schedules (issue 19): the shortest interval a schedule may run at, how late an occurrence
    # may start before `misfire` decides, how often a worker looks for due occurrences
    schedule_min_interval_s: int = Field(
        10, ge=1, le=86_400, description="floor of interval_s and of a cron's gap"
    )
    schedule_misfire_grace_s: float = Field(
        60.0, ge=1, le=86_400, description="an occurrence later than this is a misfire"
    )
    schedule_poll_s: float = Field(1.0, gt=0, le=60, description="due occurrences read this often")
    # console (issue 22): chain heads, endpoint health, lanes' nonces and balances for /v1
    console_chain_read_s: float = Field(
        2.0, ge=1, le=300, description="an API process reads each chain at most this often"
    )
    event_stream_keepalive_s: float = Field(
        15, ge=0.1, le=300, description="a comment line on an idle event stream this often"
    )
    # guardrails (issue 21): per-key rate limits (a key's own rate, `--rate`, wins); 0: none
    rate_limit_read_per_s: float = Field(
        1000.0, ge=0, le=1_000_000, description="GET/HEAD requests per second per API key"
    )
    rate_limit_write_per_s: float = Field(
        1000.0, ge=0, le=1_000_000, description="other requests per second per API key"
    )
    rate_limit_burst_s: float = Field(
        1.0, gt=0, le=3600, description="burst: this many seconds of the rate (at least 1)"
    )
    rate_limit_redis_timeout_s: float = Field(
        0.05, gt=0, le=5, description="longest wait for Redis's answer, then fail open/closed"
    )
    rate_limit_fail_open: bool = Field(
        True, description="admit (true) or refuse 503 (false) when Redis does not answer"
    )
    api_group_commit_ms: float = Field(
        1.0,
        ge=0,
        le=100,
        description="PostgreSQL: submissions arriving within this many ms are stored in one "
        "statement and one commit (0: each on its own)",
    )
    rpc_breaker_open_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="an RPC endpoint that failed 3 times in a row is skipped this long, then "
        "probed with one request",
    )
    worker_idle_poll_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="a chain's loop that finds nothing to do waits up to this long between "
        "rounds (doubling from CHAINFLOW_WORKER_POLL_S); doorbells still wake it at once",
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql", "postgres://", "sqlite")):
            raise ValueError("must start with postgresql:// or sqlite:///")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: str) -> str:
        parse_retry_schedule(value)
        return value

    @field_validator("test_crash_at")
    @classmethod
    def _check_crash_at(cls, value: str | None) -> str | None:
        if value:
            parse_crash_at(value)
        return value or None

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @property
    def is_embedded(self) -> bool:
        """True when no Redis is configured: one process, in-process queue."""
        return self.redis_url is None

    @property
    def uses_data_dir(self) -> bool:
        """True when the master key file or the SQLite database lives in the data folder."""
        return self.master_key is None or self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'chainflow.db').resolve()}"


def load_settings() -> Settings:
    """Read settings from the environment.

    Raises:
        ConfigError: one line naming the first invalid setting, never the value.
    """
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CHAINFLOW_" + str(first["loc"][0]).upper() if first["loc"] else "CHAINFLOW_*"
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return load_settings()
