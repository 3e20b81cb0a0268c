"""Hosts that answer badly, and documents over the limits, through a real tick.

The host is a scripted fake (its answers are the test's input); the tick, the parser
and the database are the real ones, on SQLite and PostgreSQL. What is checked each
time: the bad part is refused, counted and logged, and the rest of the tick applies.
"""

from __future__ import annotations

import logging

import pytest

from monitor.domxml.parser import parse_domain
from monitor.errors import UsageError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.source import VmReport, xml_by_vm
from monitor.settings import MAX_STORABLE_VALUE_CHARS, Limits, load_settings
from monitor.store import Store
from monitor.tick.host_tick import TickContext, run_tick
from monitor.wiring import tick_context

from demo_host import DEMO, ELSEWHERE, FIRST, SECOND, ScriptedHost, demo_answer, store  # noqa: F401


def vm(store: Store, vm_id: str):
    with store.transaction() as tx:
        return tx.vm(vm_id)


def padded(xml: bytes, size: int) -> bytes:
    return xml.replace(b"<devices>", b"<!--" + b"x" * size + b"--><devices>", 1)


def more_devices(xml: bytes, count: int) -> bytes:
    return xml.replace(b"</devices>", b"<memballoon model='none'/>" * count + b"</devices>", 1)


def deeper(xml: bytes, depth: int) -> bytes:
    return xml.replace(b"</devices>", b"<x>" * depth + b"</x>" * depth + b"</devices>", 1)


def device_count(xml: bytes) -> int:
    return len(parse_domain(xml).devices)


LIMIT_CASES = [
    pytest.param(lambda xml: padded(xml, 10_000), lambda xmls: Limits(
        max_xml_bytes=max(len(xmls[FIRST]), len(xmls[SECOND])) + 100),
        "over the limit of", id="max-xml-bytes"),
    pytest.param(lambda xml: more_devices(xml, 5), lambda xmls: Limits(
        max_devices=max(device_count(xmls[FIRST]), device_count(xmls[SECOND]))),
        "devices in <devices>", id="max-devices"),
    pytest.param(lambda xml: deeper(xml, 40), lambda xmls: Limits(max_depth=20),
                 "deeper than 20 levels", id="max-depth"),
]


@pytest.mark.parametrize(("mutate", "limits_for", "message"), LIMIT_CASES)
def test_a_vm_over_a_limit_gets_last_error_and_the_others_apply(store, mutate, limits_for,
                                                                message):
    reports, xmls = demo_answer()
    limits = limits_for(xmls)
    xmls[FIRST] = mutate(xmls[FIRST])
    summary = run_tick(ScriptedHost("host-a", reports, xmls),
                       TickContext(store=store, holder="t", limits=limits))
    assert (summary.applied, summary.errors["xml"]) == (1, 1)
    refused, applied = vm(store, FIRST), vm(store, SECOND)
    assert refused.hash is None and refused.last_error_hash == reports[FIRST].hash
    assert message in refused.last_error and "\n" not in refused.last_error
    assert applied.hash == reports[SECOND].hash and applied.last_error is None


def test_the_same_document_passes_under_the_default_limits(store):
    reports, xmls = demo_answer()
    xmls[FIRST] = deeper(more_devices(padded(xmls[FIRST], 10_000), 5), 40)
    summary = run_tick(ScriptedHost("host-a", reports, xmls), TickContext(store=store, holder="t"))
    assert (summary.applied, summary.errors["xml"]) == (2, 0)


def test_xml_for_a_vm_not_asked_for_is_ignored_and_logged_once(store, caplog):
    reports, xmls = demo_answer()
    stray = read_fixture(DEMO).ticks[0].answer("host-b").xml_path(ELSEWHERE).read_bytes()
    host = ScriptedHost("host-a", reports, {**xmls, ELSEWHERE: stray})
    context = TickContext(store=store, holder="t")
    caplog.set_level(logging.WARNING, logger="monitor.tick")
    first = run_tick(host, context)
    host.reports = {vm_id: VmReport("Up", "changed") for vm_id in reports}  # fetched again
    second = run_tick(host, context)
    assert [first.errors["unasked"], second.errors["unasked"]] == [1, 1]
    assert (first.applied, second.applied) == (2, 2)
    assert host.dumped == [sorted(reports)] * 2
    other = vm(store, ELSEWHERE)
    assert other.hash is None and other.last_error is None  # never applied, never blamed
    logged = [r for r in caplog.records if "not asked for" in r.getMessage()]
    assert [(r.host, r.vm) for r in logged] == [("host-a", ELSEWHERE)]


def test_reports_of_the_wrong_shape_are_skipped_and_counted(store, caplog):
    reports, xmls = demo_answer()
    garbage = {
        FIRST: VmReport(5, "h"),  # type: ignore[arg-type]  # a status that is no string
        ELSEWHERE: VmReport("Up", 7),  # type: ignore[arg-type]  # a hash that is no string
        "00000000-0000-4000-8000-00000000000a": {"status": "Up"},  # not a report
        42: VmReport("Up", "h"),  # a VM id that is no string
        SECOND: reports[SECOND],
    }
    caplog.set_level(logging.WARNING, logger="monitor.tick")
    summary = run_tick(ScriptedHost("host-a", garbage, xmls), TickContext(store=store, holder="t"))
    assert summary.completed and summary.errors["bad-report"] == 4
    assert (summary.polled, summary.applied) == (1, 1)
    assert vm(store, SECOND).hash == reports[SECOND].hash
    assert vm(store, FIRST).hash is None and vm(store, FIRST).status == "Up"  # untouched
    reasons = sorted(r.getMessage() for r in caplog.records if r.kind == "bad-report")
    assert len(reasons) == 4 and any("status is a int" in text for text in reasons)


@pytest.mark.parametrize("answer", [
    pytest.param(None, id="none"),
    pytest.param(["vm", "list"], id="list"),
    pytest.param("<html>502 Bad Gateway</html>", id="text"),
])
def test_a_poll_that_is_no_answer_fails_that_host_only(store, answer):
    reports, xmls = demo_answer()
    context = TickContext(store=store, holder="t")
    bad = run_tick(ScriptedHost("host-b", answer, {}), context)
    good = run_tick(ScriptedHost("host-a", reports, xmls), context)
    assert (bad.host_error, bad.errors["host-garbage"], bad.completed) == ("garbage", 1, False)
    assert good.completed and good.applied == 2


def test_a_dump_that_is_no_answer_fails_the_host_and_is_retried(store):
    reports, xmls = demo_answer()
    context = TickContext(store=store, holder="t")
    host = ScriptedHost("host-a", reports, [("not", "a mapping")])
    failed = run_tick(host, context)
    assert (failed.host_error, failed.applied, failed.fetched) == ("garbage", 0, 0)
    assert vm(store, FIRST).hash is None and vm(store, FIRST).last_error is None
    host.xmls = xmls
    retried = run_tick(host, context)  # the locks were released: the VMs are fetched again
    assert retried.applied == 2


def test_a_document_that_is_no_bytes_is_a_bad_xml(store):
    reports, xmls = demo_answer()
    xmls[FIRST] = 12345
    xmls[SECOND] = xmls[SECOND].decode("utf-8")  # text is fine: an agent's JSON carries it
    summary = run_tick(ScriptedHost("host-a", reports, xmls), TickContext(store=store, holder="t"))
    assert (summary.applied, summary.errors["xml"]) == (1, 1)
    assert "not an XML document" in vm(store, FIRST).last_error


def test_xml_by_vm_keeps_the_first_copy_and_logs_the_others(caplog):
    caplog.set_level(logging.WARNING, logger="monitor.hosts")
    pairs = [(FIRST, b"<first/>"), (SECOND, b"<other/>"), (FIRST, b"<second/>"),
             (FIRST, b"<third/>")]
    assert xml_by_vm(pairs, "host-a") == {FIRST: b"<first/>", SECOND: b"<other/>"}
    assert [(r.host, r.vm, r.kind) for r in caplog.records] == [
        ("host-a", FIRST, "duplicate"), ("host-a", FIRST, "duplicate")]


# --- the limits in the configuration file ---------------------------------------------


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return str(path)


def test_limits_come_from_the_config_file_into_the_tick(tmp_path):
    config = write_config(tmp_path, "[limits]\nmax_xml_bytes = 1000\nmax_depth = 9\n")
    settings = load_settings(db="sqlite://", config=config)
    assert settings.limits == Limits(max_xml_bytes=1000, max_devices=4096, max_depth=9)
    with Store.open("sqlite://") as store:
        assert tick_context(store, settings).limits == settings.limits


@pytest.mark.parametrize(("text", "message"), [
    pytest.param('max_devices = "many"', '[limits] max_devices: expected a whole number, '
                 'got "many"', id="text"),
    pytest.param("max_depth = 0", "[limits] max_depth: must be at least 1, got 0", id="zero"),
    pytest.param("max_xml_bytes = 1.5", "[limits] max_xml_bytes: expected a whole number",
                 id="float"),
    pytest.param("max_devices = true", "[limits] max_devices: expected a whole number",
                 id="bool"),
    pytest.param("max_size = 5", "[limits] max_size: unknown key", id="unknown"),
    pytest.param("max_value_chars = 601", "[limits] max_value_chars: must be at most 600",
                 id="value-past-the-index-limit"),
])
def test_a_bad_limit_is_a_one_line_error_at_start(tmp_path, text, message):
    config = write_config(tmp_path, f"[limits]\n{text}\n")
    with pytest.raises(UsageError) as refused:
        load_settings(db="sqlite://", config=config)
    assert message in str(refused.value) and "\n" not in str(refused.value)


# --- what no row can store, and documents libvirt never writes -------------------------


def rows_of(store: Store, vm_id: str) -> list:
    with store.transaction() as tx:
        return sorted((row.device_id, row.alias, row.is_plugged) for row in tx.rows([vm_id])[vm_id])


LONG = "v" * 3000  # past PostgreSQL's btree entry (2,704 bytes) when it is an alias


@pytest.mark.parametrize(("mutate", "message"), [
    pytest.param(lambda xml: xml.replace(b'<alias name="pci.1"/>',
                                         f'<alias name="{LONG}"/>'.encode(), 1),
                 "alias is 3000 characters, over the limit of 512", id="alias"),
    pytest.param(lambda xml: xml.replace(b'slot="0x01"', f'slot="{LONG}"'.encode(), 1),
                 "address attribute is 3000 characters, over the limit of 512",
                 id="address-value"),
    pytest.param(lambda xml: xml.replace(b"<name>mover</name>", f"<name>{LONG}</name>".encode()),
                 "<name> is 3000 characters, over the limit of 512", id="name"),
    pytest.param(lambda xml: xml.replace(b"</devices>", f"<{LONG[:600]}/></devices>".encode()),
                 "type is 600 characters, over the limit of 512", id="device-tag"),
])
def test_a_value_no_row_can_store_is_a_bad_xml_on_both_databases(store, mutate, message):
    """The same clear last_error on SQLite and PostgreSQL (which cannot index the value)."""
    summary = tick_with_first_vm_refused(store, mutate, message)
    assert summary.errors["db"] == 0


def tick_with_first_vm_refused(store: Store, mutate, message: str):
    """One tick where FIRST's XML is ``mutate``d: refused as a bad XML, rows untouched,
    SECOND applied."""
    reports, xmls = demo_answer()
    xmls[FIRST] = mutate(xmls[FIRST])
    before = rows_of(store, FIRST)
    summary = run_tick(ScriptedHost("host-a", reports, xmls), TickContext(store=store, holder="t"))
    assert (summary.applied, summary.errors["xml"], summary.unplugged) == (1, 1, 0)
    refused = vm(store, FIRST)
    assert refused.hash is None and refused.last_error_hash == reports[FIRST].hash
    assert message in refused.last_error and "\n" not in refused.last_error
    assert rows_of(store, FIRST) == before
    assert vm(store, SECOND).hash == reports[SECOND].hash
    return summary


@pytest.mark.parametrize(("mutate", "message"), [
    pytest.param(lambda xml: xml.replace(b"<devices>", b"<devices/><devices>", 1),
                 "two <devices> elements", id="empty-devices-first"),
    pytest.param(lambda xml: xml.replace(b"</devices>", b"</devices><devices/>", 1),
                 "two <devices> elements", id="empty-devices-last"),
    pytest.param(lambda xml: xml.replace(
        b"</uuid>", b"</uuid><uuid>9b4d3cf8-d5db-5fa4-9488-c6d7e4444a13</uuid>", 1),
                 "two <uuid> elements", id="two-uuids"),
])
def test_a_document_with_two_uuids_or_two_devices_is_refused(store, mutate, message):
    """libvirt writes each once; an empty second <devices> used to unplug every row."""
    tick_with_first_vm_refused(store, mutate, message)


def test_one_vm_id_in_two_spellings_is_refused_for_that_vm_only(store, caplog):
    reports, xmls = demo_answer()
    shouted = FIRST.upper()
    answer = {**reports, shouted: VmReport("Up", "other-hash")}
    caplog.set_level(logging.WARNING, logger="monitor.tick")
    summary = run_tick(ScriptedHost("host-a", answer, xmls), TickContext(store=store, holder="t"))
    assert (summary.errors["bad-report"], summary.applied) == (2, 1)
    assert vm(store, FIRST).hash is None and vm(store, FIRST).last_error is None
    assert vm(store, SECOND).hash == reports[SECOND].hash
    logged = sorted(r.vm for r in caplog.records if r.kind == "bad-report")
    assert logged == sorted([FIRST, shouted])
    assert all(f"{FIRST}, {shouted}" in r.getMessage()
               for r in caplog.records if r.kind == "bad-report")


def test_the_longest_alias_allowed_is_stored_on_both_databases(store):
    """600 four-byte characters (the most max_value_chars allows) fit PostgreSQL's index."""
    reports, xmls = demo_answer()
    longest = "\U0001f600" * MAX_STORABLE_VALUE_CHARS
    xmls[FIRST] = xmls[FIRST].replace(b'<alias name="pci.1"/>',
                                      f'<alias name="{longest}"/>'.encode(), 1)
    limits = Limits(max_value_chars=MAX_STORABLE_VALUE_CHARS)
    summary = run_tick(ScriptedHost("host-a", reports, xmls),
                       TickContext(store=store, holder="t", limits=limits))
    assert (summary.applied, summary.errors["xml"], summary.errors["db"]) == (2, 0, 0)
    assert longest in {alias for _, alias, _ in rows_of(store, FIRST)}
