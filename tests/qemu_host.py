"""A real libvirt daemon with QEMU for the tests (docs/operations.md, "The real-QEMU test").

``start_qemu_host()`` uses a libvirtd already running, or starts ``virtlogd`` and
``libvirtd`` by hand (systemd need not be PID 1), reading the daemon's pid from
``/run/libvirtd.pid``; ``QemuHost.close()`` destroys and undefines every domain named
with this run's prefix, stops the default network and the daemons if it started them,
and gives ``/dev/kvm`` back its owner and mode. A part that is missing raises
``QemuUnavailable`` with the reason (conftest turns it into a skip, or a failure under
MONITOR_REQUIRE_QEMU).

What tests use: ``uri``; ``vm_name(suffix)`` (the names the finalizer sweeps);
``guest`` (the kernel and initrd a VM definition boots, tests/qemu_guest.py);
``work`` (a folder QEMU's user can write: disk images, console sockets);
``nic_source()`` (the default network when it runs, else user networking);
``attach``/``detach`` of a device XML; ``wait_removed``, which waits for libvirt's
device-removed event with a deadline (unplug under TCG is asynchronous);
``wait_console`` for the guest's ready line; ``restart_daemon``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qemu_guest import READY_LINE, GuestBoot, guest_boot

URI = "qemu:///system"
LIBVIRTD, VIRTLOGD = Path("/usr/sbin/libvirtd"), Path("/usr/sbin/virtlogd")
EMULATOR = Path("/usr/bin/qemu-system-x86_64")
PIDFILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}
KVM = Path("/dev/kvm")
QEMU_USER, KVM_GROUP = "libvirt-qemu", "kvm"  # Debian's
DAEMON_DEADLINE_S = 30.0


class QemuUnavailable(Exception):
    """A part of the real-QEMU host is missing; the message says which."""


def _deadline(seconds: float, what: str, ready: Callable[[], object]):
    """``ready()``'s first true value, tried until ``seconds`` pass; TimeoutError after."""
    end = time.monotonic() + seconds
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {seconds:g}s")
        time.sleep(0.05)  # the polling step of a wait with a deadline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
    return next((line for line in status.splitlines() if line.startswith("State:")), "").lower()


def _running_pid(name: str) -> int | None:
    try:
        pid = int(PIDFILES[name].read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


class _Daemon:
    """One daemon started here by hand: ``NAME -d`` forks, and writes its pid file."""

    def __init__(self, name: str, binary: Path) -> None:
        self.name, self.binary = name, binary
        self.pid: int | None = None

    def start(self) -> None:
        done = subprocess.run([str(self.binary), "-d"], capture_output=True, text=True,
                              timeout=DAEMON_DEADLINE_S, check=False)
        if done.returncode:
            raise QemuUnavailable(f"{self.name} -d failed: {done.stderr.strip()}")
        self.pid = _deadline(DAEMON_DEADLINE_S, f"{PIDFILES[self.name]} of {self.name}",
                             lambda: _running_pid(self.name))

    def stop(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
            _deadline(DAEMON_DEADLINE_S, f"{self.name} ({pid}) to exit",
                      lambda: not _alive(pid))
        except ProcessLookupError:
            return
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)


class _KvmAccess:
    """Where ``/dev/kvm`` exists but QEMU's user cannot open it, libvirt probes QEMU
    again on every call (a define took minutes): open it to the kvm group for the run
    (as udev does on a stock host), and give it back its owner and mode after."""

    def __init__(self) -> None:
        self._saved: tuple[int, int] | None = None

    def grant(self) -> None:
        if not KVM.exists() or os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam(QEMU_USER)
            group = grp.getgrnam(KVM_GROUP)
        except KeyError:
            return  # no QEMU user to let in
        status = KVM.stat()
        in_group = status.st_gid in {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
        if (status.st_mode & 0o006 == 0o006) or (in_group and status.st_mode & 0o060 == 0o060):
            return
        self._saved = (status.st_gid, status.st_mode & 0o7777)
        os.chown(KVM, -1, group.gr_gid)
        KVM.chmod(0o660)

    def restore(self) -> None:
        if self._saved is not None:
            gid, mode = self._saved
            os.chown(KVM, -1, gid)
            KVM.chmod(mode)
            self._saved = None


class DeviceEvents:
    """libvirt's device-removed events, on a connection of their own with the default
    event loop running in a daemon thread; every event is kept, so a wait that starts
    after the event still sees it."""

    def __init__(self, libvirt, uri: str) -> None:
        self._libvirt = libvirt
        self._uri = uri
        self._removed: list[tuple[str, str]] = []  # (vm id, alias)
        self._changed = threading.Condition()
        self._connection = None
        _start_event_loop(libvirt)
        self.connect()

    def connect(self) -> None:
        """(Re)open the connection; after a daemon restart, events need a new one."""
        self.close()
        self._connection = self._libvirt.open(self._uri)
        self._connection.domainEventRegisterAny(
            None, self._libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_removed, None)

    def _on_removed(self, _connection, domain, alias, _opaque) -> None:
        with self._changed:
            self._removed.append((domain.UUIDString().lower(), alias))
            self._changed.notify_all()

    def removed(self, vm_id: str, alias: str) -> bool:
        with self._changed:
            return (vm_id, alias) in self._removed

    def wait_removed(self, vm_id: str, alias: str, timeout_s: float) -> None:
        """Until libvirt says ``alias`` left ``vm_id``; TimeoutError past the deadline."""
        with self._changed:
            if not self._changed.wait_for(lambda: (vm_id, alias) in self._removed, timeout_s):
                raise TimeoutError(f"no device-removed event for {alias} of {vm_id} "
                                   f"within {timeout_s:g}s")
            self._removed.remove((vm_id, alias))

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except self._libvirt.libvirtError:
                pass  # a connection the daemon's restart already broke
            self._connection = None


_EVENT_LOOP_LOCK = threading.Lock()
_EVENT_LOOP_STARTED = False


def _start_event_loop(libvirt) -> None:
    """libvirt's default event loop, once per process, in a daemon thread."""
    global _EVENT_LOOP_STARTED
    with _EVENT_LOOP_LOCK:
        if _EVENT_LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _EVENT_LOOP_STARTED = True


class QemuHost:
    """The daemon, its default network, a work folder and the guest, for one test run."""

    def __init__(self, libvirt, guest: GuestBoot) -> None:
        self.libvirt = libvirt
        self.uri = URI
        self.guest = guest
        self.prefix = f"monitor-test-{os.getpid()}-"
        self.work = Path(tempfile.mkdtemp(prefix="monitor-qemu-", dir="/var/tmp"))
        self.work.chmod(0o777)  # QEMU's user makes its sockets here
        self.network: str | None = None
        self._network_started = False
        self._daemons = [_Daemon("virtlogd", VIRTLOGD), _Daemon("libvirtd", LIBVIRTD)]
        self._kvm = _KvmAccess()
        self.connection = None
        self.events: DeviceEvents | None = None

    # --- the daemon ---------------------------------------------------------------

    @property
    def owns_daemon(self) -> bool:
        return self._daemons[1].pid is not None

    def open(self) -> "QemuHost":
        self._kvm.grant()
        for daemon in self._daemons:
            if _running_pid(daemon.name) is None:
                daemon.start()
        self.connection = self._connect()
        self.events = DeviceEvents(self.libvirt, self.uri)
        self._start_network()
        return self

    def _connect(self):
        libvirt = self.libvirt

        def opened():
            try:
                return libvirt.open(self.uri)
            except libvirt.libvirtError:
                return None

        try:
            return _deadline(DAEMON_DEADLINE_S, f"libvirt at {self.uri}", opened)
        except TimeoutError as error:
            raise QemuUnavailable(str(error)) from None

    def restart_daemon(self) -> None:
        """Stop and start libvirtd (QEMU's processes go on); reconnect what this holds."""
        if not self.owns_daemon:
            raise QemuUnavailable("restarting libvirtd needs one this test run started")
        daemon = self._daemons[1]
        daemon.stop()
        daemon.start()
        self.connection = self._connect()
        self.events.connect()

    def _start_network(self) -> None:
        """The default network if it runs or starts; else NICs use user networking."""
        libvirt = self.libvirt
        try:
            network = self.connection.networkLookupByName("default")
            if not network.isActive():
                network.create()
                self._network_started = True
            self.network = "default"
        except libvirt.libvirtError:
            self.network = None

    def nic_source(self) -> str:
        """An ``<interface>``'s type and source: what this host can connect a NIC to."""
        if self.network:
            return f"type='network'><source network='{self.network}'/"
        return "type='user'"

    # --- domains and devices ----------------------------------------------------------

    def vm_name(self, suffix: str) -> str:
        return self.prefix + suffix

    def domain(self, vm_id: str):
        return self.connection.lookupByUUIDString(vm_id)

    def attach(self, vm_id: str, device_xml: str) -> None:
        self.domain(vm_id).attachDeviceFlags(device_xml, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def detach(self, vm_id: str, alias: str, *, device_xml: str | None = None,
               timeout_s: float = 120.0) -> None:
        """Unplug the device with ``alias`` (by its XML when given, as
        ``virsh detach-device`` does, else by alias) and wait until libvirt says it left."""
        domain = self.domain(vm_id)
        live = self.libvirt.VIR_DOMAIN_AFFECT_LIVE
        if device_xml is None:
            domain.detachDeviceAlias(alias, live)
        else:
            domain.detachDeviceFlags(device_xml, live)
        self.events.wait_removed(vm_id, alias, timeout_s)

    def wait_removed(self, vm_id: str, alias: str, timeout_s: float = 120.0) -> None:
        self.events.wait_removed(vm_id, alias, timeout_s)

    def wait_console(self, path: Path, timeout_s: float = 180.0) -> None:
        """Until the guest writes its ready line on the console socket at ``path``."""
        end = time.monotonic() + timeout_s
        seen = b""
        with socket.socket(socket.AF_UNIX) as console:
            _deadline(timeout_s, f"console socket {path}", lambda: _connected(console, path))
            while READY_LINE not in seen:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the guest wrote no {READY_LINE!r} on {path} "
                                       f"within {timeout_s:g}s")
                console.settimeout(left)
                try:
                    seen = seen[-len(READY_LINE):] + console.recv(4096)
                except socket.timeout:
                    continue

    # --- the end ------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove what this run made; the problems met (also in the daemons' stop)."""
        problems: list[str] = []
        if self.connection is not None:
            problems += self._remove_domains()
            if self._network_started:
                try:
                    self.connection.networkLookupByName("default").destroy()
                except self.libvirt.libvirtError as error:
                    problems.append(f"stopping the default network: {error}")
        if self.events is not None:
            self.events.close()
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        for daemon in reversed(self._daemons):
            daemon.stop()
        self._kvm.restore()
        shutil.rmtree(self.work, ignore_errors=True)
        return problems

    def _remove_domains(self) -> list[str]:
        problems = []
        for domain in self.connection.listAllDomains(0):
            if not domain.name().startswith(self.prefix):
                continue
            try:
                persistent = domain.isPersistent()  # a transient one is gone once destroyed
                if domain.isActive():
                    domain.destroy()
                if persistent:
                    domain.undefine()
            except self.libvirt.libvirtError as error:
                problems.append(f"removing domain {domain.name()}: {error}")
        return problems


def _connected(client: socket.socket, path: Path) -> bool:
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    return True


def start_qemu_host(libvirt) -> QemuHost:
    """The host, ready; QemuUnavailable (nothing left behind) when a part is missing."""
    for binary, package in ((LIBVIRTD, "libvirt-daemon-system"), (VIRTLOGD, "libvirt-daemon-system"),
                            (EMULATOR, "qemu-system-x86")):
        if not binary.exists():
            raise QemuUnavailable(f"needs {binary} (Debian package {package}; scripts/test "
                                  "installs it)")
    if os.geteuid() != 0 and _running_pid("libvirtd") is None:
        raise QemuUnavailable("no libvirtd runs, and starting one needs root")
    try:
        guest = guest_boot()
    except (RuntimeError, OSError) as error:
        raise QemuUnavailable(f"no guest kernel: {error}") from None
    host = QemuHost(libvirt, guest)
    try:
        return host.open()
    except (QemuUnavailable, TimeoutError, libvirt.libvirtError) as error:
        host.close()
        raise QemuUnavailable(str(error)) from None
