"""The files of deploy/: Prometheus config and alert rules, the Grafana dashboard."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "chainflow.json"
_METRIC = re.compile(r"\bchainflow_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def family_of(sample_name: str) -> str:
    """The metric family of a sample name (`x_total`, `x_bucket`… → `x`)."""
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


def rule_expressions() -> list[str]:
    rules: dict[str, Any] = yaml.safe_load(ALERT_RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def metrics_used() -> set[str]:
    """Every chainflow_* metric family the alert rules and the dashboard query."""
    text = "\n".join(rule_expressions() + dashboard_expressions())
    return {family_of(name) for name in _METRIC.findall(text)}
