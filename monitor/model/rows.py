"""The manager's records: a VM and its device rows, as the store hands them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(slots=True)
class DeviceRow:
    """A device row (docs/architecture.md, "Data model"). Values are kept as given, so load/export round-trips."""

    device_id: str
    vm_id: str
    type: str
    device: str
    address: dict[str, str] = field(default_factory=dict)
    alias: str = ""
    spec_params: dict[str, Any] = field(default_factory=dict)
    is_managed: bool = True
    is_plugged: bool = True
    is_readonly: bool = False
    logical_name: str | None = None
    host_device: str | None = None
    custom_properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class VmRecord:
    """A VM (docs/architecture.md, "Data model").

    ``hash`` names the last XML applied (or None); ``hash_time`` is the report time of
    that poll; ``last_error_hash``/``last_error`` the last hash whose XML could not be
    used. ``definition`` holds what run-VM needs (see docs/run-vm.md).
    """

    id: str
    name: str
    host: str | None = None
    status: str | None = None
    hash: str | None = None
    hash_time: datetime | None = None
    last_error_hash: str | None = None
    last_error: str | None = None
    definition: dict[str, Any] = field(default_factory=dict)


class VmState(NamedTuple):
    """What a tick's plan reads of a stored VM (``monitor.tick.bookkeeping``): the
    ``VmRecord`` fields it decides on, without the name, the last error's text or the
    run-VM definition, which a tick never reads (docs/performance.md, "The fourth wave")."""

    id: str
    host: str | None
    status: str | None
    hash: str | None
    hash_time: datetime | None
    last_error_hash: str | None
