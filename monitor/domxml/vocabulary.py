"""oVirt's type/device vocabulary (BRIEF section 6), as one table per rule.

A device's ``type``/``device`` pair is what a DB row stores, so this table decides
which row kind an XML element can ever match. Unknown tags are kept, named after
themselves, so nothing libvirt reports is dropped.

The kinds named "the tag / the model or @type, else the tag" in the brief read
exactly one attribute each, listed in ``_BY_ATTRIBUTE``:

========== ======== =========================================
tag        type     device
========== ======== =========================================
graphics   graphics ``@type`` (vnc, spice, ...)
channel    channel  ``@type`` (unix, spicevmc, ...)
redirdev   redir    ``@type`` (spicevmc, tcp)
rng        rng      ``@model`` (virtio)
watchdog   watchdog ``@model`` (i6300esb, ib700, itco, diag288)
sound      sound    ``@model`` (ich6, ich9, ac97, ...)
smartcard  smartcard ``@mode`` (passthrough, host, host-certificates)
console    console  ``@type`` (pty, unix, ...)
tpm        tpm      ``@model`` (tpm-tis, tpm-crb, ...)
panic      panic    ``@model`` (isa, pseries, hyperv, ...)
========== ======== =========================================

When that attribute is absent the device is the tag itself.
"""

from __future__ import annotations

from collections.abc import Callable

# tag -> (type, the attribute holding the device)
_BY_ATTRIBUTE: dict[str, tuple[str, str]] = {
    "graphics": ("graphics", "type"),
    "channel": ("channel", "type"),
    "redirdev": ("redir", "type"),
    "rng": ("rng", "model"),
    "watchdog": ("watchdog", "model"),
    "sound": ("sound", "model"),
    "smartcard": ("smartcard", "mode"),
    "console": ("console", "type"),
    "tpm": ("tpm", "model"),
    "panic": ("panic", "model"),
}

# Kinds the singleton rule matches by "model" (BRIEF section 3), and where it is read.
SINGLETON_TAGS = frozenset(
    ("memballoon", "rng", "watchdog", "tpm", "sound", "smartcard", "console", "panic",
     "video", "graphics")
)


def _disk(element) -> tuple[str, str]:
    return "disk", element.get("device") or "disk"


def _interface(element) -> tuple[str, str]:
    return "interface", "hostdev" if element.get("type") == "hostdev" else "bridge"


def _controller(element) -> tuple[str, str]:
    if element.get("model") == "virtio-scsi":
        return "controller", "virtio-scsi"
    return "controller", element.get("type") or "controller"


def _video(element) -> tuple[str, str]:
    return "video", video_model(element) or "video"


def _hostdev(element) -> tuple[str, str]:
    kind = element.get("type")
    if kind == "mdev":
        return "mdev", "vfio"
    return "hostdev", kind or "hostdev"


_BY_FUNCTION: dict[str, Callable[..., tuple[str, str]]] = {
    "disk": _disk,
    "interface": _interface,
    "controller": _controller,
    "video": _video,
    "hostdev": _hostdev,
    "memballoon": lambda element: ("balloon", "memballoon"),
    "memory": lambda element: ("memory", "memory"),
}


def _by_attribute(tag: str, type_: str, attribute: str) -> Callable[..., tuple[str, str]]:
    return lambda element: (type_, element.get(attribute) or tag)


# One lookup per device on the hot path: every known tag maps to its reader.
_KIND_READERS: dict[str, Callable[..., tuple[str, str]]] = {
    **{tag: _by_attribute(tag, *entry) for tag, entry in _BY_ATTRIBUTE.items()},
    **_BY_FUNCTION,
}


def kind_of(tag: str, element) -> tuple[str, str]:
    """The (type, device) pair of one device element; unknown tags name themselves."""
    reader = _KIND_READERS.get(tag)
    return reader(element) if reader is not None else (tag, tag)


def video_model(element) -> str | None:
    for model in element.iterchildren("model"):
        return model.get("type")
    return None


def model_of(tag: str, element) -> str | None:
    """The model the singleton rule compares, read from the same attribute as the device.

    ``memballoon`` is not in the device table (its device is always ``memballoon``),
    but its ``@model`` (virtio, none) still tells two balloons apart.
    """
    if tag == "video":
        return video_model(element)
    if tag == "memballoon":
        return element.get("model")
    by_attribute = _BY_ATTRIBUTE.get(tag)
    return element.get(by_attribute[1]) if by_attribute is not None else None


# libvirt's children of <devices> (domaincommon.rng): a document whose root is one of
# these is read as a lone device, as libvirt's hot-plug tests and attach-device use it.
DEVICE_TAGS = frozenset(
    ("emulator", "disk", "controller", "lease", "filesystem", "interface", "input", "sound",
     "audio", "hostdev", "graphics", "video", "console", "serial", "parallel", "channel",
     "smartcard", "redirdev", "redirfilter", "hub", "watchdog", "memballoon", "rng", "tpm",
     "shmem", "memory", "iommu", "vsock", "panic", "crypto", "pstore", "nvram")
)
