"""The benchmark never rots: its fleet is the builder's output, and a small run counts right.

Times are not asserted (a shared CI machine is too noisy); counts are.
"""

from __future__ import annotations

import json

import pytest
from lxml import etree

from monitor.bench.fleet import (
    PCIE_ROOT_PORTS,
    Fleet,
    built_live_xml,
    managed_rows,
    shape_of,
)
from monitor.bench.runner import (
    PARTIAL_SAMPLES,
    BenchOptions,
    changed_indexes,
    run_bench,
    scaling_fleet,
)
from monitor.cli import main
from monitor.domxml import parse_domain
from monitor.settings import Settings
from monitor.wiring import open_store, tick_context


@pytest.mark.parametrize("index", [
    pytest.param(0, id="first-vm"),
    pytest.param(1, id="second-shape"),
    pytest.param(2, id="third-shape"),
    pytest.param(0x00ABCDEF, id="large-index"),
])
@pytest.mark.parametrize("layout", [0, 1])
def test_fleet_xml_is_the_builders_output(index, layout):
    assert Fleet(10, 1).document(index, layout).xml == built_live_xml(index, layout)


def test_fleet_vms_have_their_16_root_ports_and_the_builder_adds_none():
    """The fleet's rows already hold the 16 root ports a Q35 VM gets (docs/run-vm.md)."""
    for index in range(3):
        domain = etree.fromstring(Fleet(3, 1).document(index, 0).xml)
        ports = domain.findall("devices/controller[@model='pcie-root-port']")
        assert len(ports) == PCIE_ROOT_PORTS == 16
        assert all(p.find("alias").get("name").startswith("pci.") for p in ports)  # libvirt's


def test_layouts_move_every_addressed_device():
    fleet = Fleet(3, 1)
    for index in range(3):
        before = parse_domain(fleet.document(index, 0).xml).devices
        after = parse_domain(fleet.document(index, 1).xml).devices
        moved = [(a.tag, a.address.attrs) for a, b in zip(before, after)
                 if a.address and a.address == b.address]
        assert moved == [], f"VM {index} ({shape_of(index)}): devices kept their address"
        assert fleet.document(index, 0).hash != fleet.document(index, 1).hash


def test_hosts_hold_contiguous_blocks_of_every_vm():
    fleet = Fleet(10, 3)
    blocks = [list(fleet.host_vms(host)) for host in range(3)]
    assert sum(blocks, []) == list(range(10))
    assert [len(block) for block in blocks] == [3, 3, 4]


@pytest.mark.parametrize("vms, hosts, expected", [
    pytest.param(10_000, 100, (1000, 10), id="default-fleet"),
    pytest.param(200, 4, (20, 1), id="smoke-fleet"),
    pytest.param(5, 5, (1, 1), id="tiny-fleet"),
])
def test_scaling_fleet_is_a_tenth(vms, hosts, expected):
    fleet = scaling_fleet(BenchOptions(vms=vms, hosts=hosts))
    assert (fleet.vms, fleet.hosts) == expected


@pytest.mark.parametrize("vms, pct, expected", [
    pytest.param(10_000, 1.0, 100, id="one-percent"),
    pytest.param(200, 1.0, 2, id="smoke"),
    pytest.param(200, 100.0, 200, id="everything"),
])
def test_changed_share(vms, pct, expected):
    assert len(changed_indexes(Fleet(vms, 1), pct, 0)) == expected


def _bench(capsys, *extra: str, vms: int = 200) -> dict:
    code = main(["bench", "--vms", str(vms), "--hosts", "4", "--runs", "1", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _check_counts(result: dict, dialect: str) -> None:
    fleet = Fleet(200, 4)
    managed = sum(len(managed_rows(index)) for index in range(200))
    assert (result["vms"], result["hosts"], result["db"]) == (200, 4, dialect)
    assert result["devices"] == fleet.devices
    assert result["xml_bytes"] == fleet.xml_bytes
    assert 8000 <= result["xml_bytes"] / result["vms"] <= 10_000
    assert result["steady_xml_fetched"] == 0
    assert result["steady_rows_written"] == 0
    # Every row but the ones without an address (graphics, pcie-root) is rewritten.
    assert managed < result["rows_written_full"] <= result["devices"]
    assert (result["partial_vms"], result["scaling_vms"]) == (2, 20)
    for key in ("floor_parse_s", "python_walk_s", "xmltodict_parse_s", "convert_s", "full_tick_s",
                "steady_tick_s", "partial_tick_s", "scaling_ratio", "peak_rss_mb"):
        assert result[key] > 0, key


def test_smoke_run_on_a_temporary_sqlite(capsys):
    _check_counts(_bench(capsys), "sqlite")


def test_smoke_run_on_the_given_database(capsys, db_url):
    _check_counts(_bench(capsys, "--db", db_url), db_url.split(":")[0].split("+")[0])


def test_a_database_with_rows_is_refused(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'used.db'}"
    _bench(capsys, "--db", url, vms=8)
    code = main(["bench", "--vms", "20", "--hosts", "2", "--runs", "1", "--db", url])
    assert code != 0
    assert "empty database" in capsys.readouterr().err


def test_table_names_every_figure(capsys):
    code = main(["bench", "--vms", "30", "--hosts", "3", "--runs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].endswith(", sqlite, one run")  # not "median of 1 runs"
    for label in ("lxml parse", "Python walk", "xmltodict", "parse + correlate", "full tick", "steady tick",
                  "partial tick", "scaling", "peak RSS"):
        assert label in out


@pytest.mark.libvirt
def test_libvirt_source_poll_smoke_run(capsys, libvirt_module):
    code = main(["bench", "--source", "libvirt-test", "--vms", "40", "--runs", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert (result["source"], result["vms"], result["runs"]) == ("libvirt-test", 40, 2)
    assert result["steady_xml_read"] == 0  # a steady poll reads no XML
    assert result["resync_xml_read"] == 2 * 40  # a resync poll reads every VM, each round
    assert 8000 <= result["xml_bytes"] / 40 <= 10_000
    for key in ("floor_parse_s", "steady_poll_s", "resync_poll_s",
                "steady_poll_per_vm_ratio", "resync_poll_per_vm_ratio"):
        assert result[key] > 0, key


@pytest.mark.libvirt
def test_libvirt_source_poll_table_and_no_database(capsys, libvirt_module):
    assert main(["bench", "--source", "libvirt-test", "--vms", "5", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("lxml parse", "steady poll", "resync poll", "<= 0.2"):
        assert label in out
    assert main(["bench", "--source", "libvirt-test", "--db", "sqlite://"]) == 2
    assert "uses no database" in capsys.readouterr().err


@pytest.mark.parametrize("a, b", [
    pytest.param({}, {}, id="both-empty"),
    pytest.param({"type": "pci"}, {}, id="one-empty"),
    pytest.param({"type": "pci", "slot": "0x05"}, {"type": "pci", "slot": "5"}, id="hex-vs-decimal"),
    pytest.param({"type": "pci", "slot": "0x05"}, {"type": "pci", "slot": "0x06"}, id="moved"),
    pytest.param({"type": "pci", "slot": "1"}, {"type": "pci", "bus": "1"}, id="other-attribute"),
    pytest.param({"type": "drive", "unit": "0"}, {"unit": "0", "type": "drive"}, id="key-order"),
    pytest.param({"type": "pci", "slot": 5}, {"type": "pci", "slot": "0x5"}, id="int-in-a-row"),
    pytest.param({"type": "pci", "slot": "x"}, {"type": "pci", "slot": "x "}, id="text-values"),
])
def test_same_address_agrees_with_address_equality(a, b):
    """The decision's shortcut (benchmark-driven) says what ``Address ==`` says."""
    from monitor.model.address import Address, same_address

    assert same_address(a, b) == (Address(a) == Address(b))
    assert same_address(b, a) == (Address(b) == Address(a))


def test_each_round_takes_five_partial_ticks_each_after_a_steady_one(tmp_path):
    """docs/performance.md, "What is measured": the partial tick is short, so a round
    takes PARTIAL_SAMPLES of them, each of a different set of VMs and each after a
    steady tick, and its figure is their median."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'bench.db'}")
    ticks: list[str] = []

    def progress(phase: str, done: int, total: int) -> None:
        if done == total and "tick" in phase and "scaling" not in phase:
            ticks.append(phase.split(" tick")[0])

    with open_store(settings) as store:
        result = run_bench(tick_context(store, settings),
                           BenchOptions(vms=40, hosts=2, runs=2), progress)
    one_round = ["full"] + ["steady", "partial"] * PARTIAL_SAMPLES
    assert PARTIAL_SAMPLES == 5
    assert ticks == one_round * 2
    # the sets the two rounds' ten partial ticks change: all different
    samples = [tuple(changed_indexes(Fleet(40, 2), 1.0, n)) for n in range(2 * PARTIAL_SAMPLES)]
    assert len(set(samples)) == len(samples)
    assert result["partial_vms"] == 1  # 1 % of 40, at least one VM
