"""A device as libvirt reports it, read from one child of ``<devices>``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.model.address import Address
from monitor.model.alias import Alias
from monitor.model.kinds import NO_KEYS


class ReportedDevice:
    """One child of a domain's ``<devices>``, whatever its kind.

    ``type``/``device`` use oVirt's vocabulary (docs/architecture.md, "Device kinds"); ``position`` is the
    device's order in the XML. ``keys`` are computed on first use, by the loader the
    parser supplies called with the ``source`` it read the device from (its element),
    so a device matched by its alias never pays for them, and reading a device costs
    no closure.
    """

    __slots__ = ("tag", "type", "device", "alias", "address", "position", "_keys", "_loader",
                 "_source")

    def __init__(
        self,
        tag: str,
        type: str,
        device: str,
        alias: Alias,
        address: Address,
        position: int,
        keys: Any = None,
        loader: Callable[[Any], Any] | None = None,
        source: Any = None,
    ) -> None:
        self.tag = tag
        self.type = type
        self.device = device
        self.alias = alias
        self.address = address
        self.position = position
        self._keys = keys
        self._loader = loader
        self._source = source

    @property
    def keys(self) -> Any:
        """The kind's natural key (``Kind.keys``, monitor/model/kinds.py): a small
        NamedTuple of its identity fields, already normalized; ``NO_KEYS`` for a tag
        no kind declares."""
        if self._keys is None:
            self._keys = self._loader(self._source) if self._loader is not None else NO_KEYS
            self._loader = self._source = None
        return self._keys

    def __repr__(self) -> str:
        alias = self.alias.name or "-"
        return f"<{self.tag} {self.type}/{self.device} alias={alias} #{self.position}>"
