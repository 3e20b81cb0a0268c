"""Device aliases as a value type: ``ua-`` is added or stripped only here."""

from __future__ import annotations

from typing import NamedTuple

from monitor.model.ids import normalize_uuid

USER_ALIAS_PREFIX = "ua-"


class Alias(NamedTuple):
    """An alias as libvirt reports it.

    ``name`` is the text as written (``""`` when the device has none);
    ``user_uuid`` is the lower-case device id of a user alias ``ua-<uuid>``, else ``None``.
    A ``ua-`` alias whose rest is not a UUID is a libvirt-style alias, not an error.
    """

    name: str
    user_uuid: str | None

    @classmethod
    def parse(cls, name: str | None) -> "Alias":
        if not name:
            return NO_ALIAS
        if name[:3] == USER_ALIAS_PREFIX:
            return cls(name, normalize_uuid(name[3:]))
        return cls(name, None)

    @classmethod
    def for_device(cls, device_id: str) -> "Alias":
        """The user alias the run-VM builder stamps on a managed device."""
        canonical = normalize_uuid(device_id)
        if canonical is None:
            raise ValueError(f"device id is not a UUID: {device_id!r}")
        return cls(USER_ALIAS_PREFIX + canonical, canonical)

    @property
    def is_user(self) -> bool:
        return self.user_uuid is not None

    @property
    def libvirt_assigned(self) -> bool:
        """A name libvirt chose (``net0``, ``pci.1``): libvirt never makes a ``ua-`` one,
        and hands a freed name to the next device attached."""
        return bool(self.name) and self.name[:3] != USER_ALIAS_PREFIX

    def __bool__(self) -> bool:
        return bool(self.name)


NO_ALIAS = Alias("", None)
