"""deploy/ is valid for Prometheus (promtool), and compose.yaml runs what it scrapes."""

import shutil
import subprocess
from pathlib import Path

import yaml

from chainflow.cli.worker import DEFAULT_METRICS_PORT
from tests.support.deploy import (
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    dashboard_expressions,
    metrics_used,
    rule_expressions,
)

COMPOSE = Path(__file__).resolve().parents[3] / "compose.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # Installed by scripts/bootstrap (Debian's `prometheus` package): missing is a failure.
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: run ./scripts/bootstrap"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)


class TestPrometheusFiles:
    def test_promtool_accepts_the_alert_rules(self) -> None:
        result = promtool("check", "rules", str(ALERT_RULES))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_promtool_accepts_the_config(self) -> None:
        result = promtool("check", "config", str(PROMETHEUS_CONFIG))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_rules_cover_every_alert_of_issue_18(self) -> None:
        used = "\n".join(rule_expressions())
        for metric in (
            "chainflow_lane_queued",
            "chainflow_lane_oldest_pending_seconds",
            "chainflow_lane_nonce_lag",
            "chainflow_wallet_balance_wei",
            "chainflow_rpc_endpoint_healthy",
            "chainflow_chain_head_age_seconds",
            "chainflow_api_overloaded_total",
        ):
            assert metric in used, metric


class TestDashboard:
    def test_every_panel_queries_chainflow_metrics(self) -> None:
        expressions = dashboard_expressions()
        assert len(expressions) >= 15
        assert all("chainflow_" in expr for expr in expressions)
        assert len(metrics_used()) >= 18


class TestCompose:
    def test_compose_runs_every_scraped_target(self) -> None:
        compose = yaml.safe_load(COMPOSE.read_text())
        services = compose["services"]
        for name in ("postgres", "redis", "migrate", "api", "prometheus", "grafana"):
            assert name in services, name
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        targets = [
            target
            for job in config["scrape_configs"]
            for static in job["static_configs"]
            for target in static["targets"]
        ]
        assert targets == ["api:8000", "worker-1:9464", "worker-2:9464"]
        for worker in ("worker-1", "worker-2"):
            command = services[worker]["command"]
            assert command == ["worker", "--metrics-port", str(DEFAULT_METRICS_PORT)]
