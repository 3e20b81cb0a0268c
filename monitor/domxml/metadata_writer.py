"""The oVirt part of ``<metadata>``: ``ovirt-vm:vm`` and ``ovirt-tune:qos``.

The host agent (VDSM) reads what libvirt has no element for from here: storage ids per
disk, the network per NIC, custom properties, VM-level values. Its format, which we
follow: every value is a leaf element in the ``ovirt-vm`` namespace; non-strings carry a
type hint (``type="int"``, ``"float"``, ``"bool"`` with ``true``/``false``); per-device
entries are ``<ovirt-vm:device>`` elements whose *attributes* are how the agent looks
them up (a disk by ``devtype="disk" name="<target dev>"``, a NIC by ``mac_address``, an
mdev by ``devtype="hostdev" uuid``, anything else by ``devtype`` and ``name`` = alias).

``replace_ovirt_metadata`` rewrites only those two elements of an existing document:
other namespaces' metadata, comments and processing instructions stay as they were
(STYLE point 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lxml import etree

from monitor.domxml.device_plan import PlannedDevice, plan_devices
from monitor.domxml.hardened import new_parser
from monitor.domxml.namespaces import NSMAP, OVIRT_TUNE, OVIRT_VM, QOS_TAG, VM_TAG, in_vm
from monitor.domxml.vm_definition import Scalar, VmDefinition
from monitor.domxml.writers import mdev_uuid, nic_mac
from monitor.errors import DefinitionError, XmlError
from monitor.model.rows import DeviceRow, VmRecord

OUR_TAGS = frozenset({VM_TAG, QOS_TAG})

# Children of <domain> that libvirt writes before <metadata>.
_BEFORE_METADATA = frozenset({"name", "uuid", "genid", "title", "description"})

# Disk spec_params -> the metadata keys the agent builds the volume path and lease from.
DISK_IDS = (("pool_id", "poolID"), ("domain_id", "domainID"), ("image_id", "imageID"),
            ("volume_id", "volumeID"))

Element = etree._Element


def _child(parent: Element, namespace: str, key: str) -> Element:
    try:
        return etree.SubElement(parent, f"{{{namespace}}}{key}")
    except ValueError:
        raise DefinitionError(f"metadata key {key!r} is not a valid XML name") from None


def write_typed(parent: Element, namespace: str, key: str, value: Scalar) -> Element:
    """One value as the agent reads it back: a leaf with a type hint unless a string."""
    element = _child(parent, namespace, key)
    if isinstance(value, bool):
        element.set("type", "bool")
        element.text = "true" if value else "false"
    elif isinstance(value, int):
        element.set("type", "int")
        element.text = str(value)
    elif isinstance(value, float):
        element.set("type", "float")
        element.text = repr(value)
    elif isinstance(value, str):
        element.text = value
    else:
        raise DefinitionError(f"metadata value of {key!r} has unsupported type: {value!r}")
    return element


def _values(parent: Element, namespace: str, values: Mapping[str, object]) -> None:
    for key in sorted(values):
        write_typed(parent, namespace, key, values[key])  # type: ignore[arg-type]


def _custom(parent: Element, properties: Mapping[str, object]) -> None:
    if properties:
        _values(_child(parent, OVIRT_VM, "custom"), OVIRT_VM, properties)


def _device_entry(parent: Element, attrs: Mapping[str, str]) -> Element:
    entry = _child(parent, OVIRT_VM, "device")
    for name, value in attrs.items():
        entry.set(name, value)
    return entry


def _disk_entry(parent: Element, planned: PlannedDevice) -> None:
    row = planned.row
    values: dict[str, Scalar] = {
        key: str(row.spec_params[spec]) for spec, key in DISK_IDS if row.spec_params.get(spec)
    }
    if row.logical_name:
        values["guestName"] = row.logical_name
    if row.spec_params.get("shared"):
        values["shared"] = str(row.spec_params["shared"])
    if not values and not row.custom_properties:
        return
    entry = _device_entry(parent, {"devtype": "disk", "name": planned.target_dev or ""})
    _values(entry, OVIRT_VM, values)
    _custom(entry, row.custom_properties)


def _nic_entry(parent: Element, planned: PlannedDevice) -> None:
    row = planned.row
    entry = _device_entry(parent, {"mac_address": nic_mac(row)})
    network = row.spec_params.get("network") or "ovirtmgmt"
    write_typed(entry, OVIRT_VM, "network", str(network))
    _custom(entry, row.custom_properties)


def _mdev_entry(parent: Element, planned: PlannedDevice) -> None:
    row = planned.row
    mdev_type = row.spec_params.get("mdev_type")
    uuid = mdev_uuid(row)
    if uuid is None or not (mdev_type or row.custom_properties):
        return
    entry = _device_entry(parent, {"devtype": "hostdev", "uuid": uuid})
    if mdev_type:
        write_typed(entry, OVIRT_VM, "mdevType", str(mdev_type))
    _custom(entry, row.custom_properties)


def _other_entry(parent: Element, planned: PlannedDevice) -> None:
    if planned.alias and planned.row.custom_properties:
        entry = _device_entry(parent, {"devtype": planned.row.type, "name": planned.alias.name})
        _custom(entry, planned.row.custom_properties)


_ENTRY_WRITERS = {"disk": _disk_entry, "interface": _nic_entry, "mdev": _mdev_entry}


def metadata_children(
    definition: VmDefinition, plan: Sequence[PlannedDevice]
) -> tuple[Element, Element]:
    """``ovirt-tune:qos`` and ``ovirt-vm:vm`` for a planned VM: sorted values, then one
    device entry per device that needs one (in device order), then custom properties."""
    qos = etree.Element(QOS_TAG, nsmap=NSMAP)
    _values(qos, OVIRT_TUNE, definition.qos)
    vm = etree.Element(VM_TAG, nsmap=NSMAP)
    _values(vm, OVIRT_VM, definition.metadata)
    for planned in plan:
        _ENTRY_WRITERS.get(planned.row.type, _other_entry)(vm, planned)
    _custom(vm, definition.custom_properties)
    return qos, vm


def ovirt_metadata_element(vm: VmRecord, rows: Sequence[DeviceRow]) -> Element:
    """A ``<metadata>`` element holding our two children, for a VM and its rows."""
    definition = VmDefinition.from_record(vm)
    metadata = etree.Element("metadata", nsmap=NSMAP)
    metadata.extend(metadata_children(definition, plan_devices(definition, rows)))
    return metadata


# --- rewriting an existing document --------------------------------------------------


def _read(domain_xml: bytes) -> etree._ElementTree:
    try:
        tree = etree.ElementTree(etree.fromstring(domain_xml, new_parser()))
    except etree.XMLSyntaxError as error:
        raise XmlError(f"malformed Domain XML: {error}") from None
    if tree.docinfo.doctype:
        raise XmlError("Domain XML with a DOCTYPE refused")
    if tree.getroot().tag != "domain":
        raise XmlError(f"root is <{tree.getroot().tag}>, not <domain>")
    return tree


def _metadata_of(domain: Element) -> Element:
    found = domain.find("metadata")
    if found is not None:
        return found
    position = 0
    for index, child in enumerate(domain):
        if child.tag in _BEFORE_METADATA:
            position = index + 1
    metadata = etree.Element("metadata")
    domain.insert(position, metadata)
    return metadata


def replace_ovirt_metadata(domain_xml: bytes, vm: VmRecord, rows: Sequence[DeviceRow]) -> bytes:
    """The same document with our two metadata elements rebuilt from ``vm`` and ``rows``.

    They take the place of the first of ours found (else go last in ``<metadata>``,
    which is created after ``<name>``/``<uuid>`` if absent); every other node is kept.
    Replacing twice gives the same bytes.
    """
    tree = _read(domain_xml)
    metadata = _metadata_of(tree.getroot())
    ours = [child for child in metadata if child.tag in OUR_TAGS]
    position = metadata.index(ours[0]) if ours else len(metadata)
    for child in ours:
        _drop_keeping_tail(child)
    fresh = ovirt_metadata_element(vm, rows)
    for offset, child in enumerate(list(fresh)):
        metadata.insert(position + offset, child)
    declared = domain_xml.lstrip()[:5] == b"<?xml"
    return etree.tostring(tree, encoding="UTF-8", xml_declaration=declared)


def _drop_keeping_tail(child: Element) -> None:
    """Remove ``child`` but not the text after it, which belongs to its neighbours."""
    parent = child.getparent()
    tail = child.tail
    previous = child.getprevious()
    parent.remove(child)
    if tail and tail.strip():  # foreign mixed content: keep it where it was
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
