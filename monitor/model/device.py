"""A device as libvirt reports it, read from one child of ``<devices>``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from monitor.model.address import Address
from monitor.model.alias import Alias
from monitor.model.hostaddress import HostAddress


class NaturalKeys(NamedTuple):
    """What identifies a device of its kind when no alias does.

    Read lazily (only for devices the alias rules left open), already normalized:
    MAC lower-case, numbers as ints where they are numbers, UUIDs lower-case.
    """

    mac: str | None = None
    serial: str | None = None
    source: str | None = None  # disk source file / dev / volume / network name
    target_dev: str | None = None
    target_bus: str | None = None
    host_address: HostAddress | None = None
    controller_type: str | None = None
    controller_index: int | str | None = None
    controller_model: str | None = None
    memory_model: str | None = None
    memory_node: int | str | None = None
    memory_size_mib: int | str | None = None
    model: str | None = None  # video/sound/rng/watchdog/tpm/... model
    channel_target_type: str | None = None
    channel_target_name: str | None = None
    readonly: bool = False


NO_KEYS = NaturalKeys()


class ReportedDevice:
    """One child of a domain's ``<devices>``, whatever its kind.

    ``type``/``device`` use oVirt's vocabulary (BRIEF section 6); ``position`` is the
    device's order in the XML. ``keys`` are computed on first use by the loader the
    parser supplies, so a device matched by its alias never pays for them.
    """

    __slots__ = ("tag", "type", "device", "alias", "address", "position", "_keys", "_loader")

    def __init__(
        self,
        tag: str,
        type: str,
        device: str,
        alias: Alias,
        address: Address,
        position: int,
        keys: NaturalKeys | None = None,
        loader: Callable[[], NaturalKeys] | None = None,
    ) -> None:
        self.tag = tag
        self.type = type
        self.device = device
        self.alias = alias
        self.address = address
        self.position = position
        self._keys = keys
        self._loader = loader

    @property
    def keys(self) -> NaturalKeys:
        if self._keys is None:
            self._keys = self._loader() if self._loader is not None else NO_KEYS
            self._loader = None
        return self._keys

    def __repr__(self) -> str:
        alias = self.alias.name or "-"
        return f"<{self.tag} {self.type}/{self.device} alias={alias} #{self.position}>"
