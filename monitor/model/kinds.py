"""Every device kind the engine knows, declared once, in ``<devices>`` order.

One ``Kind`` says what a device kind is: the element it is written as, its oVirt
``type``, how its ``device`` is read, the fields that identify it (where each is stored
in a row, where it is read from and written to in the XML, how it is normalized), the
natural-key rules that compare them, and its flags. Everything else derives from this
table at import (docs/architecture.md, "Device kinds"): the parser's readers
(``domxml/vocabulary.py``), the policy's kind sets (``matching/policy.py``), the spec
params the converter and the recorder store (``stored_spec_params``), the builder's
order and identity values (``domxml/device_plan.py``), and which rows ``decide`` never
unplugs. Adding a kind is one entry here plus, at most, a writer for its non-identity
children (``domxml/writers.py``).

Paths are relative to the device element: ``@name`` is an attribute, ``a/b`` a
descendant's text, ``a/@name`` a descendant's attribute, ``a/@x|@y`` the first
non-empty of several attributes. Pure: no XML library here.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from monitor.model.ids import normalize_number
from monitor.model.rows import DeviceRow


class Norm(str, Enum):
    """How a field's XML text becomes its comparison form (stored values stay as given)."""

    TEXT = "text"  # as written
    STRIPPED = "stripped"  # blanks around removed; empty is absent (a disk serial)
    MAC = "mac"  # lower-case colon form; what is not a MAC stays as written
    NUMBER = "number"  # an int from decimal or 0x hex; what is not a number stays text
    MIB = "mib"  # a libvirt size with its sibling @unit, in whole MiB; else text
    PRESENT = "present"  # True when the element exists
    HOST_ADDRESS = "host-address"  # the host-side source address, by the element's @type


class Unmanaged(str, Enum):
    """Whether an unmatched device of the kind becomes a new unmanaged row."""

    NEVER = "never"  # foreign: counted, logged, shown by the diagnosis, not inserted
    ALWAYS = "always"
    WITHOUT_USER_ALIAS = "without-user-alias"  # a ua- alias says it was ours: foreign


Default = Callable[[DeviceRow], Any] | Any


class Field(NamedTuple):
    """One identity field: the device key's ``name``, where a row stores it
    (``spec_params.<key>``, or a column: ``device_id``, ``host_device``,
    ``is_readonly``), the XML ``path`` it is read from and written to, its
    normalization, and what the builder writes when the row holds none."""

    name: str
    stored: str
    path: str
    norm: Norm = Norm.TEXT
    default: Default = None
    only: tuple[str, ...] = ()  # the `device`s it is written for (empty: every one)

    def written_for(self, device: str) -> bool:
        return not self.only or device in self.only

    @property
    def spec(self) -> str | None:
        """The spec_params key, or ``None`` for a field stored in a column."""
        prefix, _, key = self.stored.partition(".")
        return key if prefix == "spec_params" else None


class Kind(NamedTuple):
    type: str  # oVirt's type: what a row stores
    tag: str  # the element under <devices>
    device: str = ""  # where `device` is read ("" : always `fixed`)
    fixed: str | None = None  # `device` when nothing is read (None: the tag)
    cases: tuple[tuple[str, str, str], ...] = ()  # (path, value, device), checked first
    when: tuple[str, str] | None = None  # (path, value): this kind, not the tag's default
    devices: tuple[str, ...] = ()  # the `device` values the kind knows (docs, tests)
    fields: tuple[Field, ...] = ()
    rules: tuple[str, ...] = ()  # natural-key rules (matching/policy.py), in policy order
    by_device: bool = False  # a singleton told apart by `device` (video model, graphics type)
    unmanaged: Unmanaged = Unmanaged.NEVER
    keeps_when_unreported: bool = False  # exempt from unplug: cannot be identified reliably
    user_alias: bool = True  # libvirt's schema allows <alias> (the builder writes ua-<id>)
    order: tuple[str, ...] = ()  # builder: fields ("device" too) ordering rows of the kind

    @property
    def singleton(self) -> bool:
        return "singleton" in self.rules

    def field(self, name: str) -> Field:
        return _FIELDS[(self.type, name)]

    @property
    def keys(self) -> type:
        """The kind's natural key: a small NamedTuple of its fields (lazy, see device.py)."""
        return _KEY_TYPES[self.type]


def _channel_name(row: DeviceRow) -> str:
    return "com.redhat.spice.0" if row.device == "spicevmc" else "org.qemu.guest_agent.0"


def _controller_model(row: DeviceRow) -> str:
    return "virtio-scsi" if row.device == "virtio-scsi" else ""


def _singleton(type_: str, tag: str, device: str, devices: tuple[str, ...], **flags) -> Kind:
    return Kind(type_, tag, device, devices=devices, rules=("singleton",), **flags)


# The order is the builder's order inside <devices>: controllers first (the buses the
# rest sit on), then storage, network, host devices, and the rest.
KINDS: tuple[Kind, ...] = (
    Kind("controller", "controller", "@type", cases=(("@model", "virtio-scsi", "virtio-scsi"),),
         devices=("usb", "pci", "ide", "sata", "scsi", "virtio-serial", "virtio-scsi"),
         fields=(Field("index", "spec_params.index", "@index", Norm.NUMBER, 0),
                 Field("model", "spec_params.model", "@model", Norm.TEXT, _controller_model)),
         rules=("controller-index",), unmanaged=Unmanaged.ALWAYS, order=("device", "index")),
    Kind("disk", "disk", "@device", devices=("disk", "cdrom", "floppy", "lun"),
         # qemu has no serial on floppies or SCSI passthrough (LUNs)
         fields=(Field("serial", "device_id", "serial", Norm.STRIPPED, only=("disk", "cdrom")),
                 Field("source", "spec_params.path",
                       "source/@file|@dev|@dir|@volume|@name|@path"),
                 Field("target_dev", "spec_params.target_dev", "target/@dev"),
                 Field("target_bus", "spec_params.bus", "target/@bus"),
                 Field("readonly", "is_readonly", "readonly", Norm.PRESENT, False)),
         rules=("disk-serial", "disk-path")),
    Kind("interface", "interface", fixed="bridge", cases=(("@type", "hostdev", "hostdev"),),
         devices=("bridge", "hostdev"),
         fields=(Field("mac", "spec_params.mac_address", "mac/@address", Norm.MAC),),
         rules=("mac",)),
    Kind("hostdev", "hostdev", "@type", devices=("pci", "usb", "scsi"),
         fields=(Field("host_address", "host_device", "source", Norm.HOST_ADDRESS),),
         rules=("host-address",), unmanaged=Unmanaged.WITHOUT_USER_ALIAS),
    Kind("mdev", "hostdev", fixed="vfio", when=("@type", "mdev"), devices=("vfio",),
         fields=(Field("host_address", "host_device", "source", Norm.HOST_ADDRESS),),
         rules=("host-address",), unmanaged=Unmanaged.WITHOUT_USER_ALIAS,
         keeps_when_unreported=True),
    Kind("input", "input", devices=("input",)),
    Kind("channel", "channel", "@type", devices=("unix", "spicevmc"),
         fields=(Field("target_type", "spec_params.target_type", "target/@type", Norm.TEXT,
                       "virtio"),
                 Field("target_name", "spec_params.target_name", "target/@name", Norm.TEXT,
                       _channel_name)),
         rules=("channel-target",), unmanaged=Unmanaged.ALWAYS, order=("target_name",)),
    _singleton("console", "console", "@type", ("pty", "unix"), keeps_when_unreported=True),
    _singleton("graphics", "graphics", "@type", ("spice", "vnc"), by_device=True,
               keeps_when_unreported=True, user_alias=False),
    Kind("video", "video", "model/@type",
         devices=("qxl", "vga", "cirrus", "virtio", "bochs", "none"),
         rules=("singleton",), by_device=True),
    _singleton("sound", "sound", "@model", ("ich6", "ich9", "ac97")),
    _singleton("smartcard", "smartcard", "@mode", ("passthrough", "host", "host-certificates"),
               user_alias=False),
    Kind("redir", "redirdev", "@type", devices=("spicevmc", "tcp"), unmanaged=Unmanaged.ALWAYS),
    _singleton("rng", "rng", "@model", ("virtio",)),
    _singleton("watchdog", "watchdog", "@model", ("i6300esb", "ib700", "itco", "diag288")),
    _singleton("tpm", "tpm", "@model", ("tpm-tis", "tpm-crb"), keeps_when_unreported=True),
    _singleton("panic", "panic", "@model", ("isa", "pseries", "hyperv")),
    Kind("balloon", "memballoon", fixed="memballoon", devices=("memballoon",),
         rules=("singleton",), keeps_when_unreported=True),
    Kind("memory", "memory", devices=("memory",),
         fields=(Field("node", "spec_params.node", "target/node", Norm.NUMBER, 0),
                 Field("size", "spec_params.size", "target/size", Norm.MIB, 1024)),
         rules=("memory-node-size",), unmanaged=Unmanaged.ALWAYS, order=("node",)),
    Kind("lease", "lease", devices=("lease",), user_alias=False),
)

KINDS_BY_TYPE: dict[str, Kind] = {kind.type: kind for kind in KINDS}
_FIELDS: dict[tuple[str, str], Field] = {
    (kind.type, field.name): field for kind in KINDS for field in kind.fields
}
_KEY_TYPES: dict[str, type] = {
    kind.type: namedtuple(  # type: ignore[misc]
        kind.type.capitalize() + "Keys",
        [field.name for field in kind.fields],
        defaults=[False if field.norm is Norm.PRESENT else None for field in kind.fields],
    )
    for kind in KINDS
}


class NoKeys(NamedTuple):
    """The natural key of a tag no kind declares: nothing identifies it."""


NO_KEYS = NoKeys()


def kinds_with(predicate: Callable[[Kind], bool]) -> frozenset[str]:
    """The types of the kinds for which ``predicate`` holds."""
    return frozenset(kind.type for kind in KINDS if predicate(kind))


def kinds_under(rule: str) -> frozenset[str]:
    """The types a natural-key rule applies to."""
    return kinds_with(lambda kind: rule in kind.rules)


# type -> (field position, spec_params key or None, column or None, a number?) per
# field a row stores (not device_id: the caller chooses the id): read on every new row.
_STORED: dict[str, tuple[tuple[int, str | None, str | None, bool], ...]] = {
    kind.type: tuple(
        (position, field.spec, None if field.spec is not None else field.stored,
         field.norm in (Norm.NUMBER, Norm.MIB))
        for position, field in enumerate(kind.fields) if field.stored != "device_id"
    )
    for kind in KINDS
}


def stored_values(kind: Kind | None, keys: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A device's key as a row stores it: (spec_params, columns); absent and empty
    values are left out, and the ``device_id`` column is the caller's to choose."""
    spec: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    for position, spec_key, column, number in _STORED[kind.type] if kind is not None else ():
        value = keys[position]
        if value is None or value == "":
            continue
        if number:
            value = normalize_number(value)  # a key built by hand may still be text
        if spec_key is not None:
            spec[spec_key] = value
        else:
            columns[column] = value  # type: ignore[index]
    return spec, columns


def stored_spec_params(kind: Kind | None, keys: Any) -> dict[str, Any]:
    return stored_values(kind, keys)[0]


def row_value(row: DeviceRow, field: Field) -> Any:
    """What a row stores for a field (``None`` when it stores nothing)."""
    if field.spec is not None:
        return row.spec_params.get(field.spec)
    return getattr(row, field.stored)


def default_value(row: DeviceRow, field: Field) -> Any:
    return field.default(row) if callable(field.default) else field.default
