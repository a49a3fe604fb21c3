"""`chainflow dev` settings: its anvil is on loopback, so private RPC hosts are allowed unless
the environment says otherwise."""

import pytest

from chainflow.cli.embedded import _dev_settings
from chainflow.core.settings import Settings


class TestDevSettings:
    def test_private_rpc_urls_are_allowed_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CHAINFLOW_RPC_ALLOW_PRIVATE_URLS", raising=False)
        assert not Settings().rpc_allow_private_urls  # `chainflow api` and `worker`
        settings = _dev_settings(Settings(redis_url="redis://127.0.0.1:6379/0"))
        assert (settings.rpc_allow_private_urls, settings.redis_url) == (True, None)

    def test_the_environment_can_refuse_them(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CHAINFLOW_RPC_ALLOW_PRIVATE_URLS", "false")
        assert not _dev_settings(Settings()).rpc_allow_private_urls

    def test_private_webhook_urls_are_allowed_by_default(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("CHAINFLOW_WEBHOOK_ALLOW_PRIVATE_URLS", raising=False)
        assert not Settings().webhook_allow_private_urls
        assert _dev_settings(Settings()).webhook_allow_private_urls
        monkeypatch.setenv("CHAINFLOW_WEBHOOK_ALLOW_PRIVATE_URLS", "false")
        assert not _dev_settings(Settings()).webhook_allow_private_urls

    def test_the_dca_demo_lowers_the_interval_floor_unless_set(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("CHAINFLOW_SCHEDULE_MIN_INTERVAL_S", raising=False)
        assert _dev_settings(Settings()).schedule_min_interval_s == 10
        assert _dev_settings(Settings(), demo_dca=True).schedule_min_interval_s == 3
        monkeypatch.setenv("CHAINFLOW_SCHEDULE_MIN_INTERVAL_S", "20")
        assert _dev_settings(Settings(), demo_dca=True).schedule_min_interval_s == 20
