"""The real-QEMU test's guest: a Debian kernel and a busybox initrd, booted directly.

The guest does one thing: it answers ACPI, so that unplugging a NIC or a PCIe disk
completes (docs/operations.md, "The real-QEMU test"). Its init mounts the kernel's file
systems, loads the virtio console, and writes ``READY_LINE`` on it every second, which
is how a test knows the guest kernel is up (and its hot-plug drivers with it). The
console is virtio, not a serial port: libvirt reports a serial console twice (as
``<serial>`` and ``<console>``, with one alias).

The kernel is Debian's cloud kernel (PCIe and ACPI hot-plug, memory hot-remove built in),
fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (never installed);
the initrd is written here as a ``newc`` cpio archive around ``/bin/busybox`` from
``busybox-static`` and the kernel's virtio console modules. Both are kept in a cache folder (``MONITOR_QEMU_CACHE``, default
``/var/tmp/monitor-qemu-guest``) that QEMU's user can read, so a second run reuses them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

KERNEL_PACKAGE = "linux-image-cloud-amd64"  # Debian's metapackage: its dependency is the kernel
BUSYBOX = Path("/bin/busybox")
# The virtio console (/dev/hvc0), in load order: how the guest says it is up.
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "virtio_console")
READY_LINE = b"monitor-guest-ready"
CMDLINE = "console=hvc0 quiet panic=-1 rdinit=/init"
INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for module in {" ".join(MODULES)}; do /bin/busybox insmod /lib/$module.ko; done
while :; do
    echo {READY_LINE.decode()} > /dev/hvc0
    /bin/busybox sleep 1
done
"""


class GuestBoot(NamedTuple):
    kernel: Path
    initrd: Path
    cmdline: str = CMDLINE

    def definition(self) -> dict[str, str]:
        """The VM definition keys that boot this guest (docs/run-vm.md)."""
        return {"kernel": str(self.kernel), "initrd": str(self.initrd), "cmdline": self.cmdline}


def cache_dir() -> Path:
    return Path(os.environ.get("MONITOR_QEMU_CACHE", "/var/tmp/monitor-qemu-guest"))


def guest_boot(cache: Path | None = None) -> GuestBoot:
    """The kernel and initrd, from the cache or made now; a RuntimeError says what failed."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    kernel, modules = cache / "vmlinuz", cache / "modules"
    if not kernel.is_file():
        _fetch_kernel(kernel, modules)
    initrd_bytes = build_initrd(modules)
    initrd = cache / f"initrd-{hashlib.sha256(initrd_bytes).hexdigest()[:12]}.gz"
    if not initrd.is_file():
        for stale in cache.glob("initrd-*.gz"):  # an older init script's
            stale.unlink(missing_ok=True)
        _publish(initrd, initrd_bytes)
    return GuestBoot(kernel, initrd)


def _fetch_kernel(kernel: Path, modules: Path) -> None:
    """Debian's current cloud kernel and the modules the guest loads, from its package."""
    depends = _run(["apt-cache", "depends", KERNEL_PACKAGE]).decode()
    names = [line.split(":", 1)[1].strip() for line in depends.splitlines()
             if line.strip().startswith("Depends:") and "linux-image-" in line]
    if not names:
        raise RuntimeError(f"apt-cache knows no kernel for {KERNEL_PACKAGE} (apt-get update?)")
    with tempfile.TemporaryDirectory(prefix="monitor-kernel-") as work:
        _run(["apt-get", "download", "-qq", names[0]], cwd=work)
        package = next(Path(work).glob("*.deb"))
        files = tarfile.open(fileobj=io.BytesIO(_run(["dpkg-deb", "--fsys-tarfile",
                                                      str(package)])))
        wanted = {f"{name}.ko" for name in MODULES}
        modules.mkdir(exist_ok=True)
        image = None
        for member in files:
            base = Path(member.name).name
            if base in wanted:
                _publish(modules / base, files.extractfile(member).read())
            elif base.startswith("vmlinuz-") and member.isfile():
                image = files.extractfile(member).read()
        if image is None or len(list(modules.iterdir())) != len(MODULES):
            raise RuntimeError(f"{package.name} has no kernel image or misses a module")
        _publish(kernel, image)  # last: a kernel in the cache means its modules are there


def _run(command: list[str], cwd: str | None = None) -> bytes:
    done = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    if done.returncode:
        error = done.stderr.decode(errors="replace").strip() or done.returncode
        raise RuntimeError(f"{' '.join(command)}: {error}")
    return done.stdout


def _publish(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a run stopped half-way leaves no torn file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.chmod(0o644)
    partial.replace(path)


def build_initrd(modules: Path) -> bytes:
    """The initrd: busybox, the modules, the init script, the nodes init needs; a gzip'd
    newc cpio archive, the same bytes for the same inputs."""
    if not BUSYBOX.is_file():
        raise RuntimeError(f"needs {BUSYBOX} (Debian package busybox-static)")
    archive = _Cpio()
    for folder in ("bin", "dev", "lib", "proc", "sys"):
        archive.add(folder, 0o040755)
    archive.add("dev/console", 0o020600, rdev=(5, 1))
    archive.add("dev/hvc0", 0o020600, rdev=(229, 0))  # in the archive: no devtmpfs race
    archive.add("bin/busybox", 0o100755, BUSYBOX.read_bytes())
    archive.add("bin/sh", 0o120777, b"busybox")
    for name in MODULES:
        archive.add(f"lib/{name}.ko", 0o100644, (modules / f"{name}.ko").read_bytes())
    archive.add("init", 0o100755, INIT.encode())
    return gzip.compress(archive.close(), mtime=0)


class _Cpio:
    """A ``newc`` cpio archive (the initramfs format): fixed owners and times, so the
    same inputs give the same bytes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._inode = 0

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        self._inode += 1
        encoded = name.encode() + b"\0"
        fields = (self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._parts += [header, encoded, _pad(len(header) + len(encoded)), data, _pad(len(data))]

    def close(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self._parts)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)

