"""A real libvirt daemon with QEMU for the tests (docs/operations.md, "The real-QEMU test").

``start_qemu_host()`` uses a libvirtd already running, or starts ``virtlogd`` and
``libvirtd`` by hand (systemd need not be PID 1), reading the daemon's pid from
``/run/libvirtd.pid``; ``QemuHost.close()`` destroys and undefines every domain named
with this run's prefix. Test runs on one machine share the daemon (``_SharedHost``):
the last one to leave stops the default network and the daemons if a run started
them, and gives ``/dev/kvm`` back its group and mode. A part that is missing raises
``QemuUnavailable`` with the reason (conftest turns it into a skip, or a failure under
MONITOR_REQUIRE_QEMU).

What tests use: ``uri``; ``vm_name(suffix)`` (the names the finalizer sweeps);
``guest`` (the kernel and initrd a VM definition boots, tests/qemu_guest.py);
``work`` (a folder QEMU's user can write: disk images, console sockets);
``nic_source()`` (the default network when it runs, else user networking);
``attach``/``detach`` of a device XML; ``change_media``; ``wait_removed``, which waits for libvirt's
device-removed event with a deadline (unplug under TCG is asynchronous);
``wait_console`` for the guest's ready line; ``daemon_stopped`` and ``restart_daemon``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
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

from lxml import etree

from qemu_guest import READY_LINE, GuestBoot, guest_boot

from monitor.hosts.libvirt_events import start_event_loop

URI = "qemu:///system"
LIBVIRTD, VIRTLOGD = Path("/usr/sbin/libvirtd"), Path("/usr/sbin/virtlogd")
EMULATOR = Path("/usr/bin/qemu-system-x86_64")
PIDFILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}
KVM = Path("/dev/kvm")
QEMU_USER, KVM_GROUP = "libvirt-qemu", "kvm"  # Debian's
DAEMON_DEADLINE_S = 30.0
_SHARED = Path(tempfile.gettempdir())
STATE = _SHARED / "monitor-qemu-test.json"
SETUP_LOCK, USERS_LOCK = _SHARED / "monitor-qemu-test.setup.lock", _SHARED / "monitor-qemu-test.users.lock"


class QemuUnavailable(Exception):
    """A part of the real-QEMU host is missing; the message says which."""


def wait_until(seconds: float, what: str, ready: Callable[[], object]):
    """``ready()``'s first true value, tried until ``seconds`` pass; TimeoutError after
    (a wait on a real condition, with a deadline)."""
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


def _start_daemon(name: str, binary: Path) -> int:
    """``NAME -d`` forks; its pid, from the pid file it writes."""
    done = subprocess.run([str(binary), "-d"], capture_output=True, text=True,
                          timeout=DAEMON_DEADLINE_S, check=False)
    if done.returncode:
        raise QemuUnavailable(f"{name} -d failed: {done.stderr.strip()}")
    return wait_until(DAEMON_DEADLINE_S, f"{PIDFILES[name]} of {name}",
                     lambda: _running_pid(name))


def _stop_daemon(name: str, pid: int) -> None:
    """SIGTERM, and SIGKILL if it is still there after the deadline."""
    try:
        os.kill(pid, signal.SIGTERM)
        wait_until(DAEMON_DEADLINE_S, f"{name} ({pid}) to exit", lambda: not _alive(pid))
    except ProcessLookupError:
        return
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)


def _grant_kvm() -> list[int] | None:
    """Where ``/dev/kvm`` exists but QEMU's user cannot open it, libvirt probes QEMU
    again on every call (a define took minutes): open it to the kvm group (as udev does
    on a stock host); the group and mode to give back, or None if nothing changed."""
    if not KVM.exists() or os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(QEMU_USER)
        group = grp.getgrnam(KVM_GROUP)
    except KeyError:
        return None  # no QEMU user to let in
    status = KVM.stat()
    in_group = status.st_gid in {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    if (status.st_mode & 0o006 == 0o006) or (in_group and status.st_mode & 0o060 == 0o060):
        return None
    os.chown(KVM, -1, group.gr_gid)
    KVM.chmod(0o660)
    return [status.st_gid, status.st_mode & 0o7777]


def _restore_kvm(saved: list[int]) -> None:
    gid, mode = saved
    os.chown(KVM, -1, gid)
    KVM.chmod(mode)


class _SharedHost:
    """Test runs on one machine share one libvirtd (there is one ``qemu:///system``):
    each holds a shared lock on ``USERS_LOCK`` while it runs; what any of them started
    (daemons, the default network, ``/dev/kvm``'s mode) is written in ``STATE``, and the
    last run to leave undoes it. ``SETUP_LOCK`` orders joining, leaving and restarts."""

    def __init__(self) -> None:
        self._users = open(USERS_LOCK, "a")

    @contextlib.contextmanager
    def setup(self):
        """The state, under the setup lock; written back when the block ends."""
        with open(SETUP_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(STATE.read_text()) if STATE.exists() else {}
            except ValueError:
                state = {}
            try:
                yield state
            finally:  # what was started before a failure is undone by the last to leave
                if state:
                    STATE.write_text(json.dumps(state))
                else:
                    STATE.unlink(missing_ok=True)

    def join(self) -> None:
        fcntl.flock(self._users, fcntl.LOCK_SH)

    def alone(self) -> bool:
        """Whether no other run uses the host (call under ``setup``); still joined."""
        try:
            fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            fcntl.flock(self._users, fcntl.LOCK_SH)  # a failed upgrade dropped it
        return True

    def leave(self) -> None:
        self._users.close()


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
        start_event_loop()  # the process's one loop (conftest started it already)
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
        self._shared = _SharedHost()
        self.connection = None
        self.events: DeviceEvents | None = None

    # --- the daemon ---------------------------------------------------------------

    def open(self) -> "QemuHost":
        with self._shared.setup() as state:
            self._shared.join()
            if "kvm" not in state:
                state["kvm"] = _grant_kvm()
            started = state.setdefault("started", {})
            for name, binary in (("virtlogd", VIRTLOGD), ("libvirtd", LIBVIRTD)):
                if _running_pid(name) is None:
                    started[name] = _start_daemon(name, binary)
            self.connection = self._connect()
            self._start_network(state)
        self.events = DeviceEvents(self.libvirt, self.uri)
        return self

    def _connect(self):
        libvirt = self.libvirt

        def opened():
            try:
                return libvirt.open(self.uri)
            except libvirt.libvirtError:
                return None

        try:
            return wait_until(DAEMON_DEADLINE_S, f"libvirt at {self.uri}", opened)
        except TimeoutError as error:
            raise QemuUnavailable(str(error)) from None

    @contextlib.contextmanager
    def daemon_stopped(self):
        """libvirtd stopped for the block (QEMU's processes go on), then started again and
        what this holds reconnected. Only a libvirtd that a test run started, and that no
        other run uses; no run joins while it is down."""
        with self._shared.setup() as state:
            pid = state.get("started", {}).get("libvirtd")
            if pid is None or pid != _running_pid("libvirtd"):
                raise QemuUnavailable("restarting libvirtd needs one a test run started")
            if not self._shared.alone():
                raise QemuUnavailable("another test run uses this libvirtd")
            _stop_daemon("libvirtd", pid)
            try:
                yield
            finally:
                state["started"]["libvirtd"] = _start_daemon("libvirtd", LIBVIRTD)
                self.connection = self._connect()
        self.events.connect()

    def restart_daemon(self) -> None:
        """Stop and start libvirtd at once (``daemon_stopped``)."""
        with self.daemon_stopped():
            pass

    def _start_network(self, state: dict) -> None:
        """The default network if it runs or starts; else NICs use user networking."""
        libvirt = self.libvirt
        try:
            network = self.connection.networkLookupByName("default")
            if not network.isActive():
                network.create()
                state["network"] = "default"
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

    def change_media(self, vm_id: str, alias: str, source: Path) -> None:
        """``virsh change-media``: the live disk with ``alias``, with another source."""
        domain = self.domain(vm_id)
        disk = next(disk for disk in etree.fromstring(domain.XMLDesc(0)).iter("disk")
                    if disk.find(f"alias[@name='{alias}']") is not None)
        disk.find("source").set("file", str(source))
        domain.updateDeviceFlags(etree.tostring(disk, encoding="unicode"),
                                 self.libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def wait_removed(self, vm_id: str, alias: str, timeout_s: float = 120.0) -> None:
        self.events.wait_removed(vm_id, alias, timeout_s)

    def wait_console(self, path: Path, timeout_s: float = 180.0) -> None:
        """Until the guest writes its ready line on the console socket at ``path``."""
        end = time.monotonic() + timeout_s
        seen = b""
        with socket.socket(socket.AF_UNIX) as console:
            wait_until(timeout_s, f"console socket {path}", lambda: _connected(console, path))
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
        """Remove what this run made, and, the last run to leave, what the runs
        started; the problems met."""
        problems: list[str] = []
        if self.events is not None:
            self.events.close()
        with self._shared.setup() as state:
            last = self._shared.alone()
            if self.connection is not None:
                problems += self._remove_domains()
                if last and state.get("network"):
                    problems += self._stop_network(state["network"])
                with contextlib.suppress(self.libvirt.libvirtError):  # a daemon gone
                    self.connection.close()
                self.connection = None
            if last:
                for name in ("libvirtd", "virtlogd"):
                    pid = state.get("started", {}).get(name)
                    if pid is not None and pid == _running_pid(name):
                        _stop_daemon(name, pid)
                if state.get("kvm"):
                    _restore_kvm(state["kvm"])
                state.clear()
            self._shared.leave()
        shutil.rmtree(self.work, ignore_errors=True)
        return problems

    def _stop_network(self, name: str) -> list[str]:
        try:
            self.connection.networkLookupByName(name).destroy()
        except self.libvirt.libvirtError as error:
            return [f"stopping the {name} network: {error}"]
        return []

    def _remove_domains(self) -> list[str]:
        problems = []
        try:
            domains = self.connection.listAllDomains(0)
        except self.libvirt.libvirtError as error:  # e.g. another run stopped the daemon
            return [f"listing the domains: {error}"]
        for domain in domains:
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
