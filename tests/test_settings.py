"""The config file is checked whole at start: one line naming the file and the key.

Every case here was once a traceback, a silent default or a demo written into the
configured database (docs/configuration.md).
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from monitor.cli import main
from monitor.errors import UsageError
from monitor.settings import HostSettings, Limits, WorkerSettings, host_settings, load_settings

HOST = '[[hosts]]\nname = "host1"\nuri = "test:///default"\n'


def write(tmp_path, text: str) -> str:
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "message"), [
    # unknown keys and sections, anywhere, with a "did you mean" where one is close
    pytest.param('[[host]]\nname = "h"\nuri = "test:///default"\n',
                 "host: unknown section (did you mean hosts?)", id="host-for-hosts"),
    pytest.param("[workers]\ninterval = 5\n", "workers: unknown section (did you mean worker?)",
                 id="workers-for-worker"),
    pytest.param('database = "sqlite://"\n', "database: unknown key", id="unknown-top-key"),
    pytest.param("[worker]\nintervall = 5\n",
                 "[worker] intervall: unknown key (did you mean interval?)", id="worker-typo"),
    pytest.param("[limits]\nmax_device = 5\n",
                 "[limits] max_device: unknown key (did you mean max_devices?)", id="limits-typo"),
    pytest.param(HOST + 'adress = "x"\n', "[[hosts]] #1 adress: unknown key", id="hosts-key"),
    pytest.param("[worker.extra]\nx = 1\n", "[worker] extra: unknown section", id="subtable"),
    # wrong types name the key and show the value as the file spells it
    pytest.param('[worker]\ninterval = "fast"\n',
                 '[worker] interval: expected a number, got "fast"', id="interval-text"),
    pytest.param('[worker]\ninterval = "5"\n',
                 '[worker] interval: expected a number, got "5"', id="interval-quoted"),
    pytest.param("[worker]\nbatch_size = 2.5\n",
                 "[worker] batch_size: expected a whole number, got 2.5", id="batch-float"),
    pytest.param("[worker]\nmetrics_allow_remote = 1\n",
                 "[worker] metrics_allow_remote: expected true or false, got 1", id="bool"),
    pytest.param("worker = 5\n", "worker: expected a table, got 5", id="worker-number"),
    pytest.param("hosts = [1]\n", "[[hosts]] #1: expected a table, got 1", id="hosts-list"),
    pytest.param('[hosts]\nname = "h"\nuri = "test:///default"\n',
                 "hosts: expected [[hosts]] tables, got a table", id="hosts-table"),
    pytest.param('[[hosts]]\nname = "h"\nfixture = 5\n',
                 "[[hosts]] #1 fixture: expected a string, got 5", id="fixture-number"),
    pytest.param("db = 5\n", "db: expected a string, got 5", id="db-number"),
    pytest.param("[limits]\nmax_depth = 1e9\n",
                 "[limits] max_depth: expected a whole number, got 1000000000.0", id="depth-1e9"),
    # ranges, refused at start rather than at the first tick
    pytest.param("[worker]\nbatch_size = 0\n",
                 "[worker] batch_size: must be at least 1, got 0", id="batch-zero"),
    pytest.param("[worker]\nbatch_size = -1\n",
                 "[worker] batch_size: must be at least 1, got -1", id="batch-negative"),
    pytest.param("[worker]\ninterval = -5\n",
                 "[worker] interval: must be more than 0, got -5", id="interval-negative"),
    pytest.param("[worker]\ninterval = 0\n",
                 "[worker] interval: must be more than 0, got 0", id="interval-zero"),
    pytest.param("[worker]\ninterval = nan\n",
                 "[worker] interval: expected a finite number, got nan", id="interval-nan"),
    pytest.param("[worker]\nhealth_stale = nan\n",
                 "[worker] health_stale: expected a finite number, got nan", id="stale-nan"),
    pytest.param("[worker]\nbackoff_max = inf\n",
                 "[worker] backoff_max: expected a finite number, got inf", id="backoff-inf"),
    pytest.param("[limits]\nmax_depth = 1000000\n",
                 "[limits] max_depth: must be at most 255, got 1000000", id="depth-huge"),
    pytest.param("[limits]\nmax_devices = 0\n",
                 "[limits] max_devices: must be at least 1, got 0", id="devices-zero"),
    pytest.param("[worker]\nresync_interval = 0\n",
                 "[worker] resync_interval: must be more than 0, got 0", id="resync-zero"),
    pytest.param("[worker]\nresync_interval = 100000\n",
                 "[worker] resync_interval: must be at most 86400, got 100000",
                 id="resync-over-a-day"),
    pytest.param(HOST + "resync_interval = -1\n",
                 "[[hosts]] #1 resync_interval: must be more than 0, got -1",
                 id="host-resync-negative"),
    pytest.param('[[hosts]]\nname = "h"\nfixture = "f"\nresync_interval = 60\n',
                 "[[hosts]] #1: host h: resync_interval is for a libvirt host (uri)",
                 id="fixture-resync"),
    pytest.param('[worker]\nmetrics_address = "127.0.0.1:²"\n',
                 "[worker] metrics_address: '127.0.0.1:²': expected HOST:PORT", id="port-digit"),
    pytest.param('[worker]\nmetrics_address = "127.0.0.1"\n',
                 "[worker] metrics_address: '127.0.0.1': expected HOST:PORT", id="no-port"),
    # hosts: a name, exactly one of uri and fixture, names distinct
    pytest.param(HOST + HOST, "hosts: two [[hosts]] are named 'host1'", id="same-name"),
    pytest.param('[[hosts]]\nname = "h"\n', "[[hosts]] #1: host h: give uri or fixture",
                 id="no-source"),
    pytest.param('[[hosts]]\nname = "h"\nuri = "test:///default"\nfixture = "f"\n',
                 "[[hosts]] #1: host h: give uri or fixture (exactly one)", id="two-sources"),
    pytest.param('[[hosts]]\nuri = "test:///default"\n', "[[hosts]] #1 name: missing",
                 id="no-name"),
    pytest.param('[[hosts]]\nname = "qemu+ssh://h/system"\nuri = "test:///default"\n',
                 "[[hosts]] #1 name: 'qemu+ssh://h/system': use letters", id="uri-as-name"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as refused:
        load_settings(config=path)
    line = str(refused.value)
    assert line.startswith(f"config {path}: {message}"), line
    assert "\n" not in line


def test_the_first_problem_is_shown_and_the_others_counted(tmp_path):
    path = write(tmp_path, "[worker]\ninterval = -1\nbatch_size = 0\n")
    with pytest.raises(UsageError, match=r"interval: must be more than 0, got -1 \(and 1 more\)$"):
        load_settings(config=path)


def test_a_complete_file_becomes_typed_values(tmp_path, monkeypatch):
    monkeypatch.delenv("MONITOR_DB_URL", raising=False)
    path = write(tmp_path, 'db = "sqlite:///x.db"\n[worker]\ninterval = 2\nbatch_size = 10\n'
                 '[limits]\nmax_depth = 30\n' + HOST
                 + '[[hosts]]\nname = "lab"\nfixture = "fixtures/migration"\n')
    settings = load_settings(config=path)
    assert settings.db_url == "sqlite:///x.db" and settings.config_path == path
    assert settings.worker == WorkerSettings(interval=2.0, batch_size=10)
    assert isinstance(settings.worker.interval, float)
    assert settings.limits == Limits(max_depth=30)
    assert settings.hosts == (HostSettings(name="host1", uri="test:///default"),
                              HostSettings(name="lab", fixture="fixtures/migration"))


def test_a_host_named_on_the_command_line_is_checked_in_one_line():
    with pytest.raises(UsageError, match=r"^host name: 'a b': use letters"):
        host_settings(name="a b", uri="test:///default")


@pytest.mark.parametrize("text", [
    pytest.param('[[host]]\nname = "h"\nuri = "test:///default"\n', id="typo"),
    pytest.param("[worker]\ninterval = 1\n", id="no-hosts"),
])
def test_run_with_a_config_never_plays_the_demo_into_its_database(tmp_path, capsys, text,
                                                                   monkeypatch):
    monkeypatch.delenv("MONITOR_DB_URL", raising=False)
    db = tmp_path / "configured.db"
    path = write(tmp_path, f'db = "sqlite:///{db}"\n{text}')
    assert main(["run", "--config", path, "--ticks", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"monitor: error: config {path}: "), err
    assert not db.exists()  # nothing was written


def test_a_fixture_host_must_be_named_after_one_of_the_fixture_hosts(tmp_path, capsys):
    path = write(tmp_path, f'db = "sqlite:///{tmp_path / "m.db"}"\n[[hosts]]\nname = "lab"\n'
                 f'fixture = "{FIXTURES / "migration"}"\n')
    assert main(["run", "--config", path, "--ticks", "1"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"monitor: error: {FIXTURES / 'migration'}: host lab is polled in no tick; "
                   "name the host after one of the fixture's hosts: host-a, host-b"]


A = host_settings(name="a", uri="qemu+ssh://a/system")
B = host_settings(name="b", uri="qemu:///system")
B2 = host_settings(name="b2", uri="qemu:///system")
REPLAYED = host_settings(name="r", fixture="fixtures/vm-start")


@pytest.mark.parametrize("uri, given, hosts, expected", [
    pytest.param("qemu+ssh://a/system", None, (A, B), ("a", None), id="named-by-uri"),
    pytest.param("qemu+ssh://a/system", "a", (A, B), ("a", None), id="given-and-configured"),
    pytest.param("qemu+ssh://a/system", "x", (A,),
                 ("x", "host x is in no configuration (config c.toml): no worker reading it "
                       "reconciles this VM"), id="given-unknown-warns"),
    pytest.param("qemu:///system", "a", (A,),
                 ("a", "host a has another URI in config c.toml (qemu+ssh://a/system): no "
                       "worker reading it reconciles this VM"), id="given-with-another-uri-warns"),
    pytest.param("qemu:///system", "b2", (B, B2), ("b2", None), id="two-names-one-uri-given"),
])
def test_start_records_a_host_the_worker_knows(uri, given, hosts, expected):
    from monitor.commands.start import host_name_for

    assert tuple(host_name_for(uri, given, hosts, "c.toml")) == expected


@pytest.mark.parametrize("uri, hosts, path, message", [
    pytest.param("qemu:///system", (A, REPLAYED), "c.toml",
                 "--host qemu:///system: no [[hosts]] has this URI; give --host-name NAME",
                 id="no-host-has-the-uri"),
    pytest.param("qemu:///system", (B, B2), "c.toml",
                 "--host qemu:///system: [[hosts]] b and b2 have this URI; give --host-name",
                 id="two-hosts-have-the-uri"),
    pytest.param("qemu:///system", (), None, "--host qemu:///system: no config file; give",
                 id="no-config-file"),
])
def test_start_without_a_known_host_needs_its_name(uri, hosts, path, message):
    from monitor.commands.start import host_name_for

    with pytest.raises(UsageError) as raised:
        host_name_for(uri, None, hosts, path)
    assert str(raised.value).startswith(message)


@pytest.mark.libvirt
def test_a_host_resyncs_at_its_own_interval_else_the_workers(tmp_path, libvirt_module):
    from monitor.worker.sources import build_source

    path = write(tmp_path, "[worker]\nresync_interval = 120\n" + HOST
                 + '[[hosts]]\nname = "host2"\nuri = "test:///default"\n'
                 "resync_interval = 30.5\n")
    settings = load_settings(config=path)
    assert WorkerSettings().resync_interval == 300.0  # the default
    sources = [build_source(host, worker=settings.worker) for host in settings.hosts]
    try:
        assert [s.resync_interval_s for s in sources] == [120.0, 30.5]
    finally:
        for source in sources:
            source.close()
