"""The worker's /metrics and /healthz, scraped over HTTP.

In-process: the demo recording's hosts and a host that always times out tick through
the real tick with ``TickMetrics.observe`` as ``on_tick``; the counters scraped must be
the sums of the summaries the ticks returned. Health runs on a hand-moved clock, so
staleness is reached without sleeping. Then the real ``monitor run --metrics`` in a
subprocess, synchronised on its output lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.cli import main
from monitor.errors import HostTimeout, UsageError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import LoopingReplaySource
from monitor.settings import load_settings
from monitor.store import Store
from monitor.store.inventory import load_document, read_document
from monitor.tick.host_tick import TickContext, run_tick
from monitor.tick.summary import TickSummary
from monitor.worker.metrics import MetricsServer, TickMetrics, parse_address, tick_outcome

DEMO = Path(__file__).resolve().parent.parent / "monitor" / "demo" / "recording"


class TimingOutHost:
    name = "flaky"

    def poll(self):
        raise HostTimeout("host flaky: timed out")

    def dump(self, vm_ids):
        raise AssertionError("never dumped: the poll fails")

    def held_locks(self):
        return frozenset()

    def close(self) -> None:
        pass


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def served(db_url):
    """The demo's hosts and a timing-out host, metrics on an ephemeral loopback port."""
    store = Store.open(db_url)
    load_document(store, read_document(DEMO / "inventory.json"))
    fixture = read_fixture(DEMO)
    sources = [LoopingReplaySource(fixture, host) for host in fixture.hosts] + [TimingOutHost()]
    wall, monotonic = Clock(1_700_000_000.0), Clock(0.0)
    metrics = TickMetrics([s.name for s in sources], clock=wall, monotonic=monotonic)
    server = MetricsServer("127.0.0.1", 0, metrics, stale_after_s=60)
    context = TickContext(store=store, holder="t", on_tick=metrics.observe)
    yield sources, context, server, monotonic
    server.close()
    store.close()


def tick_all(sources, context, rounds: int) -> list:
    return [run_tick(source, context) for _ in range(rounds) for source in sources]


def test_scraped_counters_are_the_sums_of_the_ticks_run(served):
    sources, context, server, _ = served
    summaries = tick_all(sources, context, rounds=3)
    samples = scrape(server.url)
    for host in ("host-a", "host-b"):
        mine = [s for s in summaries if s.host == host]
        assert value(samples, "monitor_ticks_total", host=host, outcome="ok") == 3
        for metric, field in (("monitor_vms_polled_total", "polled"),
                              ("monitor_vms_fetched_total", "fetched"),
                              ("monitor_vms_applied_total", "applied"),
                              ("monitor_rows_written_total", "rows_written"),
                              ("monitor_devices_new_total", "new"),
                              ("monitor_devices_unplugged_total", "unplugged"),
                              ("monitor_devices_foreign_total", "foreign"),
                              ("monitor_conflicts_total", "conflicts")):
            assert value(samples, metric, host=host) == sum(getattr(s, field) for s in mine), metric
        rules = sum((s.rules for s in mine), Counter())
        assert rules and all(value(samples, "monitor_devices_matched_total", host=host, rule=rule)
                             == count for rule, count in rules.items())
        assert value(samples, "monitor_tick_duration_seconds_count", host=host) == 3
        assert value(samples, "monitor_last_successful_tick_timestamp_seconds",
                     host=host) == 1_700_000_000.0
    assert value(samples, "monitor_vms_applied_total", host="host-a") >= 2  # really applied
    assert value(samples, "monitor_ticks_total", host="flaky", outcome="host-timeout") == 3
    assert value(samples, "monitor_errors_total", host="flaky", kind="host-timeout") == 3
    assert value(samples, "monitor_ticks_total", host="flaky", outcome="ok") == 0
    assert value(samples, "monitor_last_successful_tick_timestamp_seconds", host="flaky") == 0


def test_healthz_fails_when_a_host_has_had_no_good_tick_for_too_long(served):
    sources, context, server, monotonic = served
    good = [s for s in sources if s.name != "flaky"]
    monotonic.now = 10
    tick_all(sources, context, rounds=1)
    status, body = health(server.url)
    assert (status, body["status"]) == (200, "ok")  # flaky never ticked, but for 10 s only
    assert body["hosts"]["host-a"] == {"good_ticks": 1, "seconds_since_good_tick": 0.0,
                                       "stale": False}
    monotonic.now = 100  # 100 s since the start: flaky is stale; the others tick now
    tick_all(sources, context, rounds=1)
    status, body = health(server.url)
    assert (status, body["status"]) == (503, "stale")
    assert {host for host, state in body["hosts"].items() if state["stale"]} == {"flaky"}
    assert body["hosts"]["flaky"] == {"good_ticks": 0, "seconds_since_good_tick": 100.0,
                                      "stale": True}
    monotonic.now = 161  # the good hosts' last tick was at 100: 61 s > 60 s
    assert health(server.url)[1]["hosts"]["host-b"]["stale"] is True
    tick_all(good, context, rounds=1)
    assert health(server.url)[1]["hosts"]["host-b"]["stale"] is False


def test_unknown_paths_are_404(served):
    *_, server, _ = served
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/admin", timeout=10)
    assert refused.value.code == 404


@pytest.mark.parametrize(("text", "allow_remote", "expected"), [
    pytest.param("127.0.0.1:9108", False, ("127.0.0.1", 9108), id="ipv4-loopback"),
    pytest.param("[::1]:0", False, ("::1", 0), id="ipv6-loopback"),
    pytest.param("localhost:9108", False, ("localhost", 9108), id="localhost"),
    pytest.param("0.0.0.0:9108", True, ("0.0.0.0", 9108), id="any-when-allowed"),
    pytest.param("0.0.0.0:9108", False, "not a loopback address", id="any-refused"),
    pytest.param("metrics.example.org:9108", False, "not a loopback", id="name-refused"),
    pytest.param("127.0.0.1", False, "expected HOST:PORT", id="no-port"),
    pytest.param(":9108", False, "expected HOST:PORT", id="no-host"),
    pytest.param("127.0.0.1:99999", False, "expected HOST:PORT", id="port-too-big"),
])
def test_parse_address(text, allow_remote, expected):
    if isinstance(expected, tuple):
        assert parse_address(text, allow_remote=allow_remote) == expected
        return
    with pytest.raises(UsageError, match=expected):
        parse_address(text, allow_remote=allow_remote)


def test_metrics_settings_come_from_the_worker_table(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text('[worker]\nmetrics_address = "127.0.0.1:9108"\nhealth_stale = 30\n'
                      "metrics_allow_remote = true\n")
    settings = load_settings(db="sqlite://", config=str(config))
    worker = settings.worker
    assert (worker.metrics_address, worker.health_stale,
            worker.metrics_allow_remote) == ("127.0.0.1:9108", 30.0, True)
    assert load_settings(db="sqlite://").worker.metrics_address is None  # off by default


def test_run_refuses_a_remote_address_in_one_line(tmp_path, capsys):
    code = main(["run", "--ticks", "1", "--metrics", "0.0.0.0:0",
                 "--db", f"sqlite:///{tmp_path / 'm.db'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if "error" in line] == [
        "monitor: error: metrics address '0.0.0.0:0' is not a loopback address; set "
        "[worker] metrics_allow_remote = true to serve it to other machines"]


def test_monitor_run_serves_metrics_and_health(tmp_path):
    env = dict(os.environ, MONITOR_DB_URL=f"sqlite:///{tmp_path / 'm.db'}")
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--interval", "0.2",
         "--metrics", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url, applied = None, Counter()
        for line in process.stdout:  # synchronised on output: the port, then two ticks
            if line.startswith("monitor: metrics on "):
                url = line.split()[3].removesuffix("/metrics,")
            if line.startswith("host="):
                host = line.split()[0].removeprefix("host=")
                applied[host] += int(line.split("applied=")[1].split()[0])
                if len(applied) == 2:
                    break
        assert url and url.startswith("http://127.0.0.1:")
        samples = scrape(url)
        status, body = health(url)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    for host, count in applied.items():
        assert value(samples, "monitor_ticks_total", host=host, outcome="ok") >= 1
        assert value(samples, "monitor_vms_applied_total", host=host) >= count > 0
    assert (status, body["status"], sorted(body["hosts"])) == (200, "ok", ["host-a", "host-b"])


@pytest.mark.parametrize(("summary", "outcome", "good"), [
    pytest.param(TickSummary("h"), "ok", True, id="ok"),
    pytest.param(TickSummary("h", errors=Counter(xml=2)), "ok", True, id="bad-vms-still-ok"),
    pytest.param(TickSummary("h", host_error="garbage"), "host-garbage", False, id="garbage"),
    pytest.param(TickSummary("h", stopped=True), "db", False, id="db-stopped"),
])
def test_outcome_and_what_counts_as_a_good_tick(summary, outcome, good):
    wall = Clock(5.0)
    metrics = TickMetrics(["h"], clock=wall, monotonic=Clock(0.0))
    metrics.observe(summary)
    assert tick_outcome(summary) == outcome
    assert metrics.registry.get_sample_value(
        "monitor_last_successful_tick_timestamp_seconds", {"host": "h"}) == (5.0 if good else 0.0)
    assert metrics.health(60).hosts[0].good_ticks == int(good)


def test_vanished_vms_are_counted_per_host_from_zero():
    metrics = TickMetrics(["host-a", "host-b"])
    metrics.observe(TickSummary(host="host-a", vanished=2))
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               for s in family.samples}
    assert value(samples, "monitor_vms_vanished_total", host="host-a") == 2
    assert ("monitor_vms_vanished_total", frozenset({("host", "host-b")})) in samples
    assert "vanished=2" in TickSummary(host="host-a", vanished=2).line()
