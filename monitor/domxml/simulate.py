"""Live-style Domain XML, as libvirt would return it for a running VM.

The run-VM builder writes what the manager sends; a running VM comes back with more:
libvirt names every device that has no user alias, assigns PCI, drive and
virtio-serial addresses, and gives the domain an ``id``. Fixtures and the benchmark
need that live form without a hypervisor, so this module produces it. It is a
simulation for tests, recordings and the benchmark; the engine never calls it.

Devices that already carry an address keep it, as libvirt does; ``reassign=True`` gives
every device a new one from ``layout`` (one of two layouts), so a benchmark run can move
every device.
"""

from __future__ import annotations

from collections import Counter

from lxml import etree

from monitor.domxml.hardened import new_parser

# The devices libvirt puts on the PCI bus (by tag), unless they already have an address.
_PCI_TAGS = frozenset(
    {"interface", "video", "memballoon", "rng", "sound", "watchdog", "hostdev", "shmem"}
)
_PCI_CONTROLLERS = frozenset(
    {"pcie-root-port", "pci-bridge", "virtio-serial", "scsi", "usb", "sata"}
)
# libvirt's alias stems, by tag; disks and controllers are named from their bus/type.
_ALIAS_STEM = {
    "interface": "net", "video": "video", "memballoon": "balloon", "channel": "channel",
    "rng": "rng", "input": "input", "serial": "serial", "console": "console",
    "sound": "sound", "watchdog": "watchdog", "hostdev": "hostdev", "redirdev": "redir",
    "memory": "dimm", "tpm": "tpm", "smartcard": "smartcard", "panic": "panic",
    "shmem": "shmem",
}
_NO_ALIAS = frozenset({"emulator", "graphics", "lease", "audio"})


def make_live(
    domain_xml: bytes, *, domain_id: int = 1, layout: int = 0, reassign: bool = False
) -> bytes:
    """The live XML of ``domain_xml`` as if libvirt had started it."""
    root = etree.fromstring(domain_xml, new_parser())
    root.set("id", str(domain_id))
    devices = root.find("devices")
    if devices is not None:
        _name_devices(devices)
        _address_devices(devices, layout, reassign)
    return etree.tostring(root, encoding="utf-8")


def _name_devices(devices) -> None:
    counts: Counter = Counter()
    for element in devices:
        if not isinstance(element.tag, str) or element.tag in _NO_ALIAS:
            continue
        if element.find("alias") is not None:
            continue
        name = _libvirt_alias(element, counts)
        alias = etree.SubElement(element, "alias")
        alias.set("name", name)
        _move_before_address(element, alias)


def _libvirt_alias(element, counts: Counter) -> str:
    tag = element.tag
    if tag == "controller":
        kind = element.get("type", "controller")
        index = element.get("index", "0")
        if kind in ("pci", "usb", "ide") and index == "0":
            return kind if kind != "pci" else "pci.0"
        return f"pci.{index}" if kind == "pci" else f"{kind}{index}"
    if tag == "disk":
        target = element.find("target")
        bus = target.get("bus", "virtio") if target is not None else "virtio"
        stem = {"virtio": "virtio-disk", "sata": "sata0-0-", "scsi": "scsi0-0-0-",
                "ide": "ide0-0-", "usb": "usb-disk", "fdc": "fdc0-0-"}.get(bus, bus)
    else:
        stem = _ALIAS_STEM.get(tag, tag)
    number = counts[stem]
    counts[stem] += 1
    return f"{stem}{number}"


def _move_before_address(element, alias) -> None:
    address = element.find("address")
    if address is not None:
        address.addprevious(alias)


def _address_devices(devices, layout: int, reassign: bool) -> None:
    def needs_address(element) -> bool:
        return reassign or element.find("address") is None

    pci_devices = [e for e in devices if _wants_pci(e) and needs_address(e)]
    slots = range(1, len(pci_devices) + 1)
    if layout % 2:
        slots = reversed(slots)
    for element, slot in zip(pci_devices, slots):
        _set_address(element, {"type": "pci", "domain": "0x0000", "bus": f"0x{(slot - 1) // 31:02x}",
                               "slot": f"0x{(slot - 1) % 31 + 1:02x}", "function": "0x0"})
    port = 1 + (layout % 2)
    for element in devices:
        if element.tag == "channel" and needs_address(element):
            _set_address(element, {"type": "virtio-serial", "controller": "0", "bus": "0",
                                   "port": str(port)})
            port += 1
    unit = layout % 2
    for element in devices:
        target = element.find("target") if element.tag == "disk" else None
        if target is not None and target.get("bus") in ("sata", "scsi", "ide") and needs_address(element):
            _set_address(element, {"type": "drive", "controller": "0", "bus": "0",
                                   "target": "0", "unit": str(unit)})
            unit += 1


def _wants_pci(element) -> bool:
    if element.tag == "controller":
        wanted = element.get("type") in _PCI_CONTROLLERS or element.get("model") in _PCI_CONTROLLERS
    elif element.tag == "disk":
        target = element.find("target")
        wanted = target is not None and target.get("bus", "virtio") == "virtio"
    else:
        wanted = element.tag in _PCI_TAGS and element.get("model") != "none"
    if element.tag == "hostdev" and element.get("type") != "pci":
        return False
    return wanted


def _set_address(element, attrs: dict[str, str]) -> None:
    old = element.find("address")
    if old is not None:
        element.remove(old)
    address = etree.SubElement(element, "address")
    for key, value in attrs.items():
        address.set(key, value)
