"""One writer per device kind: a planned row -> its element under ``<devices>``.

Each writer owns its kind's element and reads only its row's ``spec_params`` (the keys
and defaults are listed in docs/run-vm.md). ``device_element`` then adds what every
kind shares, in libvirt's order: the user alias and the stored address.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from monitor.domxml.device_plan import PlannedDevice, identity, spec_int, spec_text
from monitor.domxml.vm_definition import VmDefinition
from monitor.errors import DefinitionError
from monitor.model.hostaddress import HostAddress, parse_node_device_name
from monitor.model.ids import normalize_mac
from monitor.model.kinds import KINDS, KINDS_BY_TYPE
from monitor.model.rows import DeviceRow

Element = etree._Element
Writer = Callable[[PlannedDevice, VmDefinition], Element]

DISK_IMAGE_DIR = "/var/lib/libvirt/images"
RHEV_DATA_CENTER = "/rhev/data-center"
MAC_PREFIX = "00:1a:4a"  # oVirt's default MAC pool prefix


def _element(type_: str, **attrs: str) -> Element:
    """A kind's element, named by the kinds table (``redir`` is ``<redirdev>``)."""
    return etree.Element(KINDS_BY_TYPE[type_].tag, attrs)


def _sub(parent: Element, tag: str, **attrs: str) -> Element:
    return etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})


def _spec(row: DeviceRow, key: str, default: str) -> str:
    return spec_text(row.spec_params.get(key), default)


def _boot(element: Element, row: DeviceRow) -> None:
    order = spec_int(row.spec_params.get("boot_order"), 0)
    if order > 0:
        _sub(element, "boot", order=str(order))


def _need(definition: VmDefinition, row: DeviceRow, what: str) -> DefinitionError:
    return DefinitionError(
        f"VM {definition.vm_id}: {row.type} row {row.device_id} needs {what}"
    )


_SERIAL = KINDS_BY_TYPE["disk"].field("serial")


# --- storage -------------------------------------------------------------------------


def disk_source_path(row: DeviceRow) -> str:
    """Where the disk's data is: the stored path, else the image path the host agent
    prepares from the storage ids, else a LUN's multipath device, else a file named
    after the device id (so disk-path matching still finds it). Empty for a CD-ROM or
    floppy with nothing inserted."""
    spec = row.spec_params
    if spec.get("path") is not None:
        return str(spec["path"])
    ids = [spec.get(key) for key in ("pool_id", "domain_id", "image_id", "volume_id")]
    if all(ids):
        pool, domain, image, volume = (str(i) for i in ids)
        return f"{RHEV_DATA_CENTER}/{pool}/{domain}/images/{image}/{volume}"
    if row.device == "lun":
        return f"/dev/mapper/{spec.get('lun_id') or row.device_id}"
    if row.device in ("cdrom", "floppy"):
        return ""
    return f"{DISK_IMAGE_DIR}/{row.device_id}.img"


def disk(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    device = row.device or "disk"
    path = disk_source_path(row)
    kind = _spec(row, "source_type", "block" if path.startswith("/dev/") else "file")
    element = _element("disk", type=kind, device=device, snapshot="no")
    removable = device in ("cdrom", "floppy")
    _sub(
        element,
        "driver",
        name="qemu",
        type=_spec(row, "format", "raw"),
        cache=None if removable else _spec(row, "cache", "none"),
        io=None if removable else _spec(row, "io", "native" if kind == "block" else "threads"),
        error_policy=_spec(row, "error_policy", "report" if removable else "stop"),
    )
    if path:
        attr = "dev" if kind == "block" else "file"
        _sub(element, "source", **{attr: path}, startupPolicy="optional" if removable else None)
    _sub(element, "target", dev=planned.target_dev, bus=planned.bus)
    if row.is_readonly or removable:
        _sub(element, "readonly")
    if _SERIAL.written_for(device):
        _sub(element, "serial").text = row.device_id
    _boot(element, row)
    return element


def lease(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    domain_id = _spec(row, "sd_id", "")
    lease_id = _spec(row, "lease_id", row.device_id)
    element = _element("lease")
    _sub(element, "lockspace").text = domain_id
    _sub(element, "key").text = lease_id
    offset = row.spec_params.get("offset")
    _sub(
        element,
        "target",
        path=_spec(row, "path", f"LEASE-PATH:{lease_id}:{domain_id}"),
        offset=str(spec_int(offset, 0)) if offset is not None else None,
    )
    return element


# --- network and host devices --------------------------------------------------------


def default_mac(device_id: str) -> str:
    """A stable MAC for a NIC row without one: the pool prefix + the id's last 3 bytes."""
    tail = device_id.replace("-", "")[-6:].lower().rjust(6, "0")
    return ":".join([MAC_PREFIX, tail[0:2], tail[2:4], tail[4:6]])


def nic_mac(row: DeviceRow) -> str:
    """The NIC's MAC in libvirt's form (lower case), so the agent's lookup of the
    metadata entry by the live XML's MAC finds it; the row keeps what was stored."""
    given = identity(row, "mac")
    if not given:
        return default_mac(row.device_id)
    mac = normalize_mac(given)
    if mac is None:
        raise DefinitionError(
            f"VM {row.vm_id}: interface row {row.device_id} has no valid MAC: {given!r}"
        )
    return mac


def _host_address(definition: VmDefinition, row: DeviceRow, kinds: tuple[str, ...]) -> HostAddress:
    found = parse_node_device_name(row.host_device)
    if found is None or found.kind not in kinds:
        raise _need(definition, row, f"host_device naming a {'/'.join(kinds)} node device")
    return found


def _pci_source(parent: Element, address: HostAddress, typed: bool) -> None:
    """A host PCI address; an ``<interface type='hostdev'>`` source names its type,
    a ``<hostdev>`` source must not (libvirt's schema)."""
    domain, bus, slot, function = address.parts
    source = _sub(parent, "source")
    _sub(source, "address", type="pci" if typed else None, domain=f"0x{domain:04x}",
         bus=f"0x{bus:02x}", slot=f"0x{slot:02x}", function=f"0x{function:x}")


def interface(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    if row.device == "hostdev":  # SR-IOV virtual function passed through
        element = _element("interface", type="hostdev", managed="yes")
        _sub(element, "mac", address=nic_mac(row))
        _pci_source(element, _host_address(definition, row, ("pci",)), typed=True)
    else:
        element = _element("interface", type="bridge")
        _sub(element, "mac", address=nic_mac(row))
        _sub(element, "model", type=_spec(row, "model", "virtio"))
        _sub(element, "source", bridge=_spec(row, "network", "ovirtmgmt"))
        _sub(element, "link", state=_spec(row, "link", "up"))
        if row.spec_params.get("filter"):
            _sub(element, "filterref", filter=_spec(row, "filter", ""))
    _boot(element, row)
    return element


def hostdev(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kinds = (row.device,) if row.device in ("pci", "usb", "scsi") else ("pci", "usb", "scsi")
    address = _host_address(definition, row, kinds)
    element = _element("hostdev", mode="subsystem", type=address.kind)
    if address.kind == "pci":
        element.set("managed", "yes")
        _pci_source(element, address, typed=False)
    elif address.kind == "usb":
        element.set("managed", "no")
        source = _sub(element, "source")
        _sub(source, "address", bus=str(address.parts[0]), device=str(address.parts[1]))
    else:
        host, bus, target, unit = address.parts
        source = _sub(element, "source")
        _sub(source, "adapter", name=f"scsi_host{host}")
        _sub(source, "address", bus=str(bus), target=str(target), unit=str(unit))
    _boot(element, row)
    return element


def mdev_uuid(row: DeviceRow) -> str | None:
    found = parse_node_device_name(row.host_device)
    if found is not None and found.kind == "mdev":
        return found.parts[0]
    return spec_text(row.spec_params.get("uuid"), "") or None


def mdev(planned: PlannedDevice, definition: VmDefinition) -> Element:
    uuid = mdev_uuid(planned.row)
    if uuid is None:
        raise _need(definition, planned.row, "host_device mdev_<uuid> or spec_params.uuid")
    element = _element("mdev", mode="subsystem", type="mdev",
                            model=_spec(planned.row, "model", "vfio-pci"))
    source = _sub(element, "source")
    _sub(source, "address", uuid=uuid)
    return element


# --- buses ---------------------------------------------------------------------------


def controller(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kind = "scsi" if row.device == "virtio-scsi" else row.device
    model = identity(row, "model") or None
    element = _element("controller", type=kind, index=str(identity(row, "index")))
    if model:
        element.set("model", model)
    if kind == "virtio-serial":
        element.set("ports", str(spec_int(row.spec_params.get("ports"), 16)))
    return element


def channel(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kind = row.device or "unix"
    element = _element("channel", type=kind)
    name = identity(row, "target_name")
    if kind == "unix":  # no path given: libvirt picks one in its own channel folder
        _sub(element, "source", mode="bind", path=_spec(row, "path", "") or None)
    _sub(element, "target", type=identity(row, "target_type"), name=name)
    return element


def console(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    path = row.spec_params.get("path")
    element = _element("console", type="unix" if path else "pty")
    if path:
        _sub(element, "source", mode="bind", path=str(path))
    _sub(element, "target", type=_spec(row, "target_type", "virtio"), port="0")
    return element


def redir(planned: PlannedDevice, definition: VmDefinition) -> Element:
    return _element("redir", bus=_spec(planned.row, "bus", "usb"),
                         type=planned.row.device or "spicevmc")


def input_device(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kind = row.device if row.device in ("tablet", "mouse", "keyboard") else "tablet"
    return _element("input", type=kind,
                         bus=_spec(row, "bus", "usb" if kind == "tablet" else "ps2"))


# --- display and the rest ------------------------------------------------------------


def _model(row: DeviceRow, tag: str, default: str) -> str:
    """A singleton's model: spec_params.model, else the row's device unless it is just
    the tag (oVirt's vocabulary falls back to the tag), else ``default``."""
    return _spec(row, "model", "") or (row.device if row.device not in ("", tag) else default)


def video(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kind = _model(row, "video", "qxl")
    element = _element("video")
    if kind == "none":
        _sub(element, "model", type="none")
        return element
    defaults = {"ram": 65536, "vram": 32768, "vgamem": 16384} if kind == "qxl" else {"vram": 16384}
    sizes = {key: str(spec_int(row.spec_params.get(key), value)) for key, value in defaults.items()}
    _sub(element, "model", type=kind, **sizes, heads=str(spec_int(row.spec_params.get("heads"), 1)))
    return element


def graphics(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    kind = row.device if row.device in ("spice", "vnc") else "spice"
    element = _element("graphics", type=kind, autoport="yes", port="-1")
    if kind == "spice":
        element.set("tlsPort", "-1")
    network = row.spec_params.get("listen_network")
    if network:
        _sub(element, "listen", type="network", network=str(network))
    else:
        _sub(element, "listen", type="address", address=_spec(row, "listen_address", "0.0.0.0"))
    return element


def balloon(planned: PlannedDevice, definition: VmDefinition) -> Element:
    model = _spec(planned.row, "model", "virtio")
    element = _element("balloon", model=model)
    if model != "none":
        _sub(element, "stats", period=str(spec_int(planned.row.spec_params.get("period"), 5)))
    return element


RNG_SOURCES = {"urandom": "/dev/urandom", "random": "/dev/random", "hwrng": "/dev/hwrng"}


def rng(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    source = _spec(row, "source", "urandom")
    element = _element("rng", model=_model(row, "rng", "virtio"))
    _sub(element, "backend", model="random").text = RNG_SOURCES.get(source, source)
    return element


def watchdog(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    return _element("watchdog", model=_model(row, "watchdog", "i6300esb"),
                         action=_spec(row, "action", "none"))


def sound(planned: PlannedDevice, definition: VmDefinition) -> Element:
    return _element("sound", model=_model(planned.row, "sound", "ich6"))


def smartcard(planned: PlannedDevice, definition: VmDefinition) -> Element:
    return _element("smartcard", mode=_spec(planned.row, "mode", "passthrough"),
                         type="spicevmc")


def tpm(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    element = _element("tpm", model=_model(row, "tpm", "tpm-crb"))
    _sub(element, "backend", type="emulator", version=_spec(row, "version", "2.0"))
    return element


def panic(planned: PlannedDevice, definition: VmDefinition) -> Element:
    return _element("panic", model=_model(planned.row, "panic", "isa"))


def memory(planned: PlannedDevice, definition: VmDefinition) -> Element:
    row = planned.row
    element = _element("memory", model=_spec(row, "model", "dimm"))
    target = _sub(element, "target")
    _sub(target, "size", unit="MiB").text = str(dimm_size_mib(row))
    _sub(target, "node").text = str(identity(row, "node"))
    return element


def dimm_size_mib(row: DeviceRow) -> int:
    return int(identity(row, "size"))


_WRITER_BY_TYPE: dict[str, Writer] = {
    "controller": controller, "disk": disk, "interface": interface, "hostdev": hostdev,
    "mdev": mdev, "input": input_device, "channel": channel, "console": console,
    "graphics": graphics, "video": video, "sound": sound, "smartcard": smartcard,
    "redir": redir, "rng": rng, "watchdog": watchdog, "tpm": tpm, "panic": panic,
    "balloon": balloon, "memory": memory, "lease": lease,
}
# Every kind of the table has its writer (a KeyError at import says which does not).
WRITERS: dict[str, Writer] = {kind.type: _WRITER_BY_TYPE[kind.type] for kind in KINDS}


def device_element(planned: PlannedDevice, definition: VmDefinition) -> Element:
    """The kind's element, then the user alias and the stored address, as libvirt
    writes them (alias before address)."""
    element = WRITERS[planned.row.type](planned, definition)
    if planned.alias:
        _sub(element, "alias", name=planned.alias.name)
    if planned.address:
        etree.SubElement(element, "address", dict(planned.address))
    return element
