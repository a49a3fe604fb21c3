"""deploy/ is valid for Prometheus (promtool), and compose.yaml runs what it scrapes."""

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import typer.main
import yaml
from typer._click.core import Command, Context  # typer 0.29 vendors click
from typer.core import TyperGroup

from chainflow.cli.app import app
from chainflow.cli.worker import DEFAULT_METRICS_PORT
from chainflow.core.settings import Settings
from tests.support.deploy import (
    ALERT_RULES,
    DASHBOARD,
    PROMETHEUS_CONFIG,
    dashboard_expressions,
    metrics_used,
    rule_expressions,
)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose.yaml"
CHAINFLOW_SERVICES = ("migrate", "api", "worker-1", "worker-2")


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
            "chainflow_lanes_paused",
            "chainflow_wallet_balance_wei",
            "chainflow_rpc_endpoint_healthy",
            "chainflow_chain_head_age_seconds",
            "chainflow_api_overloaded_total",
            "chainflow_webhook_oldest_pending_seconds",
            "chainflow_webhook_backlog",
            "chainflow_webhook_endpoints_disabled_total",
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


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def parse_command(args: list[str]) -> Context:
    """Parse `chainflow <args>` with the real CLI, as the image's entrypoint would, without
    running it: an unknown command or option, or a value out of range, raises."""
    command: Command = typer.main.get_command(app)
    ctx: Context | None = None
    name, rest = "chainflow", list(args)
    while isinstance(command, TyperGroup):
        ctx = Context(command, info_name=name, parent=ctx)
        found_name, found, rest = command.resolve_command(ctx, rest)
        assert found is not None, args
        assert found_name is not None, args
        command, name = found, found_name
    return command.make_context(name, rest, parent=ctx)


class TestComposeAgainstTheCode:
    """compose.yaml cannot run here (no Docker engine): its parts are checked against the
    code instead, so a renamed setting, option or port fails a test rather than a deploy."""

    def test_the_image_runs_the_chainflow_cli(self) -> None:
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert 'ENTRYPOINT ["chainflow"]' in dockerfile

    def test_every_chainflow_variable_is_a_setting(self) -> None:
        fields = {name.upper() for name in Settings.model_fields}
        for name in CHAINFLOW_SERVICES:
            env = compose_services()[name]["environment"]
            for key in env:
                assert key.startswith("CHAINFLOW_"), (name, key)
                # Settings ignores unknown variables: a typo here would be silently dropped.
                assert key.removeprefix("CHAINFLOW_") in fields, (name, key)

    def test_every_command_parses_with_the_cli(self) -> None:
        for name in CHAINFLOW_SERVICES:
            parse_command(compose_services()[name]["command"])

    def test_prometheus_scrapes_the_ports_the_processes_serve(self) -> None:
        services = compose_services()
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        jobs = {
            job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
        }
        api = parse_command(services["api"]["command"])
        assert not ipaddress.ip_address(api.params["host"]).is_loopback
        assert jobs["chainflow-api"] == [f"api:{api.params['port']}"]
        workers = []
        for name in ("worker-1", "worker-2"):
            worker = parse_command(services[name]["command"])
            # The metrics server binds CHAINFLOW_API_HOST: loopback would hide it from
            # Prometheus in its own container.
            host = services[name]["environment"]["CHAINFLOW_API_HOST"]
            assert not ipaddress.ip_address(host).is_loopback, name
            assert worker.params["metrics_port"] > 0
            assert worker.params["chains"] is None  # every chain, webhooks and outbox too
            workers.append(f"{name}:{worker.params['metrics_port']}")
        assert jobs["chainflow-worker"] == workers

    def test_deliveries_keep_the_ssrf_guard(self) -> None:
        for name in CHAINFLOW_SERVICES:
            env = compose_services()[name]["environment"]
            for key in ("CHAINFLOW_WEBHOOK_ALLOW_PRIVATE_URLS", "CHAINFLOW_RPC_ALLOW_PRIVATE_URLS"):
                assert str(env.get(key, "false")).lower() == "false", (name, key)

    def test_prometheus_and_grafana_mount_the_files_they_read(self) -> None:
        services = compose_services()
        mounts = {
            volume.split(":")[1]: ROOT / volume.split(":")[0]
            for name in ("prometheus", "grafana")
            for volume in services[name]["volumes"]
            if volume.startswith("./")
        }
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        for rule_file in config["rule_files"]:
            assert (mounts["/etc/prometheus"] / rule_file).is_file(), rule_file
        provisioning = mounts["/etc/grafana/provisioning"]
        provider = yaml.safe_load((provisioning / "dashboards" / "chainflow.yml").read_text())
        path = provider["providers"][0]["options"]["path"]
        assert (mounts[path] / DASHBOARD.name).is_file()
        home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert home == f"{path}/{DASHBOARD.name}"
