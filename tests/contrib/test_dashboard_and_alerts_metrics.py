"""The Grafana dashboard and the alert rules use only metrics that a live `/metrics` exports.

One `syncd run` (on a calendar folder whose one user is away, so a status event is delivered)
is scraped; every expression of every panel, of the dashboard's variables and of every alert
rule must name sample names found there (with the suffixes Prometheus gives: ``_total``,
``_bucket``, ``_sum``, ``_count``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.contrib.promql import metric_names
from tests.system.processes import folder_config

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "syncd.json"
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
PROMETHEUS_OWN = {"up"}  # made by Prometheus for every target, not by syncd

AWAY = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//syncd//test//EN", "BEGIN:VEVENT",
                    "UID:alice-sabbatical", "DTSTAMP:20250101T000000Z", "SUMMARY:Sabbatical",
                    "DTSTART;VALUE=DATE:20250101", "DTEND;VALUE=DATE:20400101", "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
                    "END:VEVENT", "END:VCALENDAR", ""])


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float | None:
    for have, value in samples.get(name, []):
        if all(have.get(k) == v for k, v in labels.items()):
            return value
    return None


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple[dict[str, str], float]]]]:
    """The samples of a live daemon's /metrics, once it has delivered alice's status change."""
    root = tmp_path_factory.mktemp("live")
    config = folder_config(root)
    (root / "calendars" / "alice" / "sabbatical.ics").write_text(AWAY)
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        assert proc.stderr is not None
        address = None
        for line in proc.stderr:
            match = re.search(r"API listening on (http://\S+)", line)
            address = address or (match[1] if match else None)
            if "syncd running" in line:
                break
        assert address, "the daemon did not say where its API listens"
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"{address}/metrics", timeout=10) as response:
                samples = _samples(response.read().decode())
            if (_value(samples, "syncd_deliveries_total", sink="stdout", result="delivered") or 0) >= 1:
                break
            assert time.monotonic() < deadline, "no status event was delivered in 30 s"
            time.sleep(0.2)
        yield samples
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return found


def test_the_live_metrics_are_what_the_daemon_knows(scraped: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    assert _value(scraped, "syncd_ready") == 1
    assert {_value(scraped, "syncd_ready_check", check=c) for c in ("database", "scheduler", "links")} == {1}
    assert _value(scraped, "syncd_replicas") == 1
    assert _value(scraped, "syncd_users", status="away") == 1
    assert _value(scraped, "syncd_links", state="ok") == 1
    assert (_value(scraped, "syncd_syncs_total", provider="local", result="ok") or 0) >= 1
    assert _value(scraped, "syncd_deliveries_total", sink="stdout", result="failed") == 0  # there from the start
    assert _value(scraped, "syncd_outbox_dead_letters") == 0
    assert _value(scraped, "syncd_push_wakeups_total") == 0 and _value(scraped, "syncd_push_channels") == 0


def test_every_dashboard_expression_uses_exported_metrics(
        scraped: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    expressions = _dashboard_expressions()
    assert len(expressions) >= 15
    used: set[str] = set()
    for where, expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing = sorted(names - scraped.keys())
        assert not missing, f"{where}: {missing} not in /metrics (expression {expr!r})"
        used |= names
    # What the dashboard is for: statuses, sync latency per provider, link states, outbox depth
    # and age, deliveries per sink, push notifications, replicas.
    for name in ("syncd_users", "syncd_sync_seconds_bucket", "syncd_links", "syncd_outbox_undelivered",
                 "syncd_outbox_oldest_undelivered_seconds", "syncd_deliveries_total", "syncd_push_wakeups_total",
                 "syncd_push_refused_total", "syncd_replicas", "syncd_ready"):
        assert name in used, f"the dashboard does not show {name}"


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "syncd" and dashboard["title"] == "syncd"
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "job"]


def test_every_alert_uses_exported_metrics(scraped: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 7
    for rule in rules:
        names = metric_names(rule["expr"])
        missing = sorted(names - scraped.keys() - PROMETHEUS_OWN)
        assert names and not missing, f"alert {rule['alert']}: {missing} not in /metrics"
