"""The diagnosis: each rule tried for a device that did not match, conflicts, and the
field differences (deepdiff) that applying the report would write."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.diagnosis import ABSENT, FieldChange, diagnose, field_changes, render_text
from monitor.matching import Rule
from monitor.model.changes import RowUpdate
from monitor.model.domain import EMPTY_METADATA, ParsedDomain

from devices_and_rows import VM, dev, numbered, row, uid

PCI_3 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03", "function": "0x0"}
PCI_7 = {**PCI_3, "slot": "0x07"}


def domain(devices) -> ParsedDomain:
    return ParsedDomain(VM, "vm", tuple(devices), EMPTY_METADATA, "domain")


def example():
    devices = numbered(
        dev("disk", alias="ua-" + uid(1), address=PCI_7),
        dev("disk", device="cdrom", alias="ua-" + uid(3)),
        dev("disk", device="cdrom", alias="ua-" + uid(3)),
        dev("disk", device="cdrom", alias="sata0-0-2", source="/var/run/vdsm/payload/x.img"),
    )
    rows = [row(uid(1), "disk", alias="ua-" + uid(1), address=PCI_3),
            row(uid(3), "disk", "cdrom", alias="ua-" + uid(3)),
            row(uid(4), "interface", "bridge", alias="ua-" + uid(4), address=PCI_3)]
    return diagnose(VM, domain(devices), rows)


def test_every_rule_tried_is_explained_for_a_device_that_matched_nothing():
    text = render_text(example())
    assert (
        "  #3 disk/cdrom alias=sata0-0-2: foreign: not inserted (only channel, controller, "
        "memory, redir and host devices without a ua- alias become rows)\n"
        "    user-alias    no key        no ua-<uuid> alias\n"
        "    stored-alias  no candidate  no open row with key disk/sata0-0-2\n"
        "    disk-serial   no key        no serial\n"
        "    disk-path     no candidate  no open disk row id or lun_id inside "
        "/var/run/vdsm/payload/x.img\n"
        "    address       no key        no address\n"
        "    stable-id     no candidate  no open row with key disk/"
    ) in text


def test_a_conflict_is_explained_and_its_row_left_alone():
    diagnosis = example()
    text = render_text(diagnosis)
    reason = (f"row {uid(3)} is selected by 2 devices: #1 disk/cdrom alias=ua-{uid(3)}, "
              f"#2 disk/cdrom alias=ua-{uid(3)}")
    assert f"Conflicts\n  user-alias: {reason}\n" in text
    assert f"  {uid(3)}  disk/cdrom        -            left alone: conflict\n" in text
    assert [d.decision for d in diagnosis.devices] == [
        Rule.USER_ALIAS, Rule.CONFLICT, Rule.CONFLICT, Rule.FOREIGN]


def test_field_differences_are_what_applying_would_change():
    rows = {r.device_id: r for r in example().rows}
    assert rows[uid(1)].effect == "update"
    assert rows[uid(1)].changes == (FieldChange("address.slot", "0x03", "0x07"),)
    assert rows[uid(4)].effect == "unplug"
    assert rows[uid(4)].changes == (FieldChange("address", PCI_3, {}),
                                     FieldChange("is_plugged", True, False))
    assert rows[uid(3)].changes == ()


def test_field_changes_name_added_and_removed_keys():
    stored = row(uid(1), "disk", address={"type": "drive", "bus": "0", "unit": "1"})
    update = RowUpdate(uid(1), True, {"type": "drive", "bus": "0", "target": "0"}, "ua-x",
                       None, None)
    assert field_changes(stored, update) == (
        FieldChange("address.target", ABSENT, "0"),
        FieldChange("address.unit", "1", ABSENT),
        FieldChange("alias", "", "ua-x"),
    )


def test_as_dict_is_json_and_carries_the_trace():
    as_dict = json.loads(json.dumps(example().as_dict()))
    foreign = as_dict["devices"][3]
    assert (foreign["decision"], [a["rule"] for a in foreign["attempts"]]) == (
        "foreign", ["user-alias", "stored-alias", "disk-serial", "disk-path", "address",
                    "stable-id"])
    assert as_dict["conflicts"][0]["rowIds"] == [uid(3)]
    assert as_dict["writes"] == {"updates": 2, "inserts": 0, "deletes": 0}


def docs_example():
    """The worked example of docs/matching.md."""
    def pci(slot):
        return {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": slot, "function": "0x0"}

    devices = numbered(
        dev("disk", alias="ua-" + uid(1), address=pci("0x07")),
        dev("interface", device="bridge", alias="net1", mac="52:54:00:00:00:02",
            address=pci("0x04")),
        dev("controller", device="pci", alias="pci.1", index=1,
            model="pcie-root-port"),
        dev("disk", device="cdrom", alias="ua-" + uid(3)),
        dev("disk", device="cdrom", alias="ua-" + uid(3)),
        dev("disk", device="cdrom", alias="sata0-0-2", source="/var/run/vdsm/payload/x.img"),
    )
    rows = [row(uid(1), "disk", alias="ua-" + uid(1), address=pci("0x03")),
            row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:02"}),
            row(uid(3), "disk", "cdrom", alias="ua-" + uid(3)),
            row(uid(4), "interface", "bridge", alias="ua-" + uid(4), address=pci("0x05")),
            row(uid(5), "graphics", "spice", alias="ua-" + uid(5))]
    return diagnose(VM, domain(devices), rows)


def test_the_documented_example_is_real_output():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "matching.md").read_text()
    shown = docs.rsplit("```\n", 2)[-2]
    assert shown == render_text(docs_example())
