"""The benchmark's synthetic fleet: N Q35 VMs on H hosts, each in two live layouts.

Every VM is what run-VM writes (``domxml.builder``) made live as libvirt returns it
(``domxml.simulate.make_live``: libvirt aliases for the unmanaged devices, addresses),
in one of two address layouts, so a "restart" moves every addressed device.

Building and making live costs ~9 ms per VM, a minute and a half for 10,000 VMs, and
keeping 10,000 x 2 documents would take ~180 MB. Neither is needed: every id of VM
``i`` spells ``i`` in its first 8 hex digits (``0000002a-0005-4000-8000-...``), and its
MACs in their last four bytes. So the builder's output for VM ``i`` is the builder's
output for a template VM (one of the top indexes) with those two spellings replaced:
same length, same device order (devices tie-break on ids, and ids of one VM sort by
device number whatever the VM). The builder runs once per shape and layout;
``Fleet.document(i, layout)`` is two ``bytes.replace``, and tests check it byte for byte against
the builder. Nothing per VM is kept: records, rows and XML are made on demand from the
index, so memory stays flat whatever the fleet size.

VMs are numbered 0..N-1 and hosts hold contiguous blocks (``host-000`` the first
N/H VMs), so the scaling run's small fleet (N/10 VMs on H/10 hosts) is the first
tenth of the big one, host by host when H is a multiple of 10.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

from monitor.domxml import parse_domain
from monitor.domxml.builder import build_domain_xml
from monitor.domxml.simulate import make_live
from monitor.model.rows import DeviceRow, VmRecord

TEMPLATE_INDEX = 0xFFFFFFFF  # templates use the top indexes; real VMs are numbered from 0
_ID_TAIL = "4000-8000-0000b3c4f1ee"  # version 4, variant 8: a well-formed UUID
POOL_ID = "5e1f0000-0000-4000-8000-0000b3c4f1ee"
STORAGE_DOMAIN_ID = "5d000000-0000-4000-8000-0000b3c4f1ee"
DEFINITION = {"memory_mib": 4096, "vcpus": 2, "machine": "q35"}
PCIE_ROOT_PORTS = 16
LAYOUTS = (0, 1)


class Shape(NamedTuple):
    """How many disks and NICs a VM has; the rest of a Q35 VM is the same for all.

    Each shape has an even number of PCI devices, so reversing the slots (layout 1)
    moves every one of them (an odd count would leave the middle one in place).
    """

    disks: int
    nics: int


SHAPES = (Shape(2, 2), Shape(3, 1), Shape(1, 1))

# Device numbers (the second group of a device id), fixed per role.
_DISK, _CDROM, _NIC = 1, 4, 5  # disks 1-3, NICs 5-7
_USB, _VSERIAL, _VIDEO, _GRAPHICS, _BALLOON, _RNG = 8, 9, 10, 11, 12, 13
_PCIE_ROOT, _PORT, _SATA, _AGENT_CHANNEL, _SPICE_CHANNEL = 16, 17, 40, 41, 42


def vm_id(index: int) -> str:
    return f"{index:08x}-0000-{_ID_TAIL}"


def device_id(index: int, number: int, variant: str = "8") -> str:
    return f"{index:08x}-{number:04x}-4000-{variant}000-0000b3c4f1ee"


def mac(index: int, nic: int) -> str:
    return f"02:{nic:02x}:" + ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))


def host_name(number: int) -> str:
    return f"host-{number:03d}"


def shape_of(index: int) -> Shape:
    return SHAPES[index % len(SHAPES)]


def vm_record(index: int, host: str) -> VmRecord:
    return VmRecord(id=vm_id(index), name=f"bench-{index:08x}", host=host, status="Up",
                    definition=dict(DEFINITION))


def managed_rows(index: int) -> list[DeviceRow]:
    """What the manager has for VM ``index`` before it runs: its managed devices."""
    owner = vm_id(index)
    shape = shape_of(index)

    def row(number: int, type_: str, device: str, **spec) -> DeviceRow:
        return DeviceRow(device_id=device_id(index, number), vm_id=owner, type=type_,
                         device=device, spec_params=spec, is_readonly=device == "cdrom")

    rows = [
        row(_DISK + n, "disk", "disk", bus="virtio", pool_id=POOL_ID,
            domain_id=STORAGE_DOMAIN_ID, image_id=device_id(index, _DISK + n, "9"),
            volume_id=device_id(index, _DISK + n, "a"), **({"boot_order": 1} if n == 0 else {}))
        for n in range(shape.disks)
    ]
    rows.append(row(_CDROM, "disk", "cdrom"))
    rows += [row(_NIC + n, "interface", "bridge", mac_address=mac(index, n))
             for n in range(shape.nics)]
    rows += [
        row(_USB, "controller", "usb", index=0, model="qemu-xhci"),
        row(_VSERIAL, "controller", "virtio-serial", index=0),
        row(_VIDEO, "video", "qxl"),
        row(_GRAPHICS, "graphics", "spice"),
        row(_BALLOON, "balloon", "memballoon"),
        row(_RNG, "rng", "virtio"),
    ]
    return rows


def libvirt_added(index: int) -> list[DeviceRow]:
    """Devices libvirt adds on start; the manager has no row until monitoring finds them."""
    owner = vm_id(index)

    def row(number: int, type_: str, device: str, **spec) -> DeviceRow:
        return DeviceRow(device_id=device_id(index, number), vm_id=owner, type=type_,
                         device=device, spec_params=spec, is_managed=False)

    added = [row(_PCIE_ROOT, "controller", "pci", index=0, model="pcie-root")]
    added += [row(_PORT + n, "controller", "pci", index=n + 1, model="pcie-root-port")
              for n in range(PCIE_ROOT_PORTS)]
    added += [
        row(_SATA, "controller", "sata", index=0),
        row(_AGENT_CHANNEL, "channel", "unix", name="org.qemu.guest_agent.0"),
        row(_SPICE_CHANNEL, "channel", "spicevmc", name="com.redhat.spice.0"),
    ]
    return added


def built_live_xml(index: int, layout: int) -> bytes:
    """VM ``index`` through the builder and ``make_live``: the slow, reference way."""
    rows = [replace(r, is_plugged=True, address={})
            for r in managed_rows(index) + libvirt_added(index)]
    xml = build_domain_xml(vm_record(index, host_name(0)), rows)
    return make_live(xml, layout=layout, reassign=True)


class Document(NamedTuple):
    """What a host holds for one VM in one layout: the XML and its devices hash."""

    xml: bytes
    hash: str


@dataclass(frozen=True)
class Fleet:
    """``vms`` VMs spread over ``hosts`` hosts in contiguous blocks."""

    vms: int
    hosts: int

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= self.vms < TEMPLATE_INDEX - len(SHAPES):
            raise ValueError(f"a fleet needs 1 <= hosts <= vms, not {self.hosts} hosts "
                             f"for {self.vms} VMs")

    def host_vms(self, host: int) -> range:
        """The VM indexes on host number ``host`` (sizes differ by at most one)."""
        return range(host * self.vms // self.hosts, (host + 1) * self.vms // self.hosts)

    def records(self, host: int) -> list[tuple[VmRecord, list[DeviceRow]]]:
        """The host's VMs and their managed rows, as the manager stores them at start."""
        name = host_name(host)
        return [(vm_record(index, name), managed_rows(index)) for index in self.host_vms(host)]

    def document(self, index: int, layout: int) -> Document:
        """VM ``index``'s live XML in ``layout`` and its hash (sha256 of the bytes:
        computing it is the host's job, so callers do it outside the timed region)."""
        template = _templates()[shape_of(index), layout]
        xml = template.xml.replace(template.index_hex, b"%08x" % index)
        xml = xml.replace(template.mac_tail, _mac_tail(index))
        return Document(xml, hashlib.sha256(xml).hexdigest())

    @cached_property
    def devices(self) -> int:
        """Devices reported across the fleet (every child of ``<devices>``)."""
        per_shape = _devices_per_shape()
        return sum(per_shape[shape_of(index)] for index in range(self.vms))

    @cached_property
    def xml_bytes(self) -> int:
        """Bytes of XML across the fleet (layout 0; layout 1 differs by a few bytes)."""
        sizes = {shape: len(t.xml) for (shape, layout), t in _templates().items() if layout == 0}
        return sum(sizes[shape_of(index)] for index in range(self.vms))


class _Template(NamedTuple):
    """One shape's template VM in one layout, and how its index is spelled in it."""

    xml: bytes
    index_hex: bytes  # in every id and the VM name
    mac_tail: bytes  # the last four bytes of every MAC (NICs differ in the second byte)


_TEMPLATE_CACHE: dict[tuple[Shape, int], _Template] = {}


def _templates() -> dict[tuple[Shape, int], _Template]:
    """Built once per process: the builder runs len(SHAPES) x len(LAYOUTS) times."""
    if not _TEMPLATE_CACHE:
        for number, shape in enumerate(SHAPES):
            # The highest index of this shape: its spelling appears nowhere else.
            template = TEMPLATE_INDEX - ((TEMPLATE_INDEX - number) % len(SHAPES))
            for layout in LAYOUTS:
                _TEMPLATE_CACHE[shape, layout] = _Template(
                    built_live_xml(template, layout), b"%08x" % template,
                    _mac_tail(template))
    return _TEMPLATE_CACHE


def _mac_tail(index: int) -> bytes:
    return mac(index, 0)[6:].encode()


def _devices_per_shape() -> dict[Shape, int]:
    return {shape: len(parse_domain(_templates()[shape, 0].xml).devices) for shape in SHAPES}
