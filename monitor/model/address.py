"""A device's ``<address>``: every attribute kept, compared in normalized form."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.model.ids import normalize_number


class Address:
    """The attributes of a device's direct-child ``<address>``, as strings, ``type`` included.

    ``attrs`` is what is stored and written back, untouched. ``key`` is the comparison
    form: numbers read as numbers, so ``bus='0x01'`` equals ``bus='1'``. An empty
    address has no key and never matches anything.
    """

    __slots__ = ("attrs", "_key")

    def __init__(self, attrs: Mapping[str, str] | None = None) -> None:
        self.attrs: dict[str, str] = dict(attrs) if attrs else {}
        self._key: tuple | None | bool = False

    @property
    def type(self) -> str:
        return self.attrs.get("type", "")

    @property
    def key(self) -> tuple | None:
        if self._key is False:
            self._key = (
                tuple(sorted((k, normalize_number(v)) for k, v in self.attrs.items()))
                if self.attrs
                else None
            )
        return self._key  # type: ignore[return-value]

    def __bool__(self) -> bool:
        return bool(self.attrs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Address) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Address({self.attrs!r})"


EMPTY_ADDRESS = Address()
_ABSENT = object()


def same_address(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """``Address(a) == Address(b)``, without building either comparison key.

    A restarted VM moves most devices, so the decision compares every matched row's
    address with the reported one and most differ; this stops at the first attribute
    that differs even as a number, instead of normalizing and sorting both.
    """
    if a == b:
        return True
    if len(a) != len(b):
        return False
    for name, value in a.items():
        other = b.get(name, _ABSENT)
        if other is _ABSENT:
            return False
        if value != other and normalize_number(value) != normalize_number(other):
            return False
    return True
