"""A VM's run parameters, read once from ``VmRecord.definition`` with their defaults.

The store keeps ``definition`` as a free JSON object so that load/export round-trip it;
this module is the one place that says which keys run-VM reads, what each defaults to,
and which types it accepts (docs/run-vm.md lists them). Unknown keys are ignored, so a
newer manager's definition still builds. A value of the wrong type is a
``DefinitionError`` naming the VM and the key: it would otherwise surface as an opaque
libvirt error on the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.errors import DefinitionError
from monitor.model.rows import VmRecord

# A metadata value: what the host agent's metadata format can type-hint.
Scalar = str | int | float | bool

DEFAULT_MACHINE = "q35"
DEFAULT_EMULATOR = "/usr/bin/qemu-system-x86_64"
DEFAULT_MEMORY_MIB = 1024
DEFAULT_MEMORY_SLOTS = 16
DEFAULT_CLUSTER_VERSION = "4.2"
DEFAULT_PCIE_ROOT_PORTS = 16  # as oVirt: room to hot-plug PCIe devices on Q35


@dataclass(slots=True, frozen=True)
class VmDefinition:
    """Everything VM-level the Domain XML needs, defaults applied."""

    vm_id: str
    name: str
    domain_type: str = "kvm"
    memory_mib: int = DEFAULT_MEMORY_MIB
    max_memory_mib: int | None = None
    memory_slots: int = DEFAULT_MEMORY_SLOTS
    vcpus: int = 1
    max_vcpus: int = 1
    cpu_model: str | None = None
    cpu_cores: int = 1
    cpu_threads: int = 1
    machine: str = DEFAULT_MACHINE
    arch: str = "x86_64"
    os_type: str = "hvm"
    emulator: str = DEFAULT_EMULATOR
    kernel: str | None = None  # direct kernel boot: host paths, and the kernel's command line
    initrd: str | None = None
    cmdline: str | None = None
    pcie_root_ports: int = DEFAULT_PCIE_ROOT_PORTS  # Q35 only: pcie-root-ports in total
    custom_properties: dict[str, Scalar] = field(default_factory=dict)
    metadata: dict[str, Scalar] = field(default_factory=dict)
    qos: dict[str, Scalar] = field(default_factory=dict)

    @property
    def is_q35(self) -> bool:
        return self.machine == "q35" or self.machine.startswith("pc-q35")

    @classmethod
    def from_record(cls, vm: VmRecord) -> "VmDefinition":
        raw = vm.definition or {}
        if not isinstance(raw, Mapping):
            raise DefinitionError(f"VM {vm.id}: definition is not an object")
        read = _Reader(vm.id, raw)
        memory = read.integer("memory_mib", DEFAULT_MEMORY_MIB)
        vcpus = read.integer("vcpus", 1)
        max_vcpus = read.integer("max_vcpus", vcpus)
        if max_vcpus < vcpus:
            raise DefinitionError(f"VM {vm.id}: max_vcpus {max_vcpus} < vcpus {vcpus}")
        kernel = read.text("kernel", None)
        if kernel is None and ("initrd" in raw or "cmdline" in raw):
            raise DefinitionError(f"VM {vm.id}: definition.initrd and cmdline need a kernel")
        return cls(
            vm_id=vm.id,
            name=vm.name,
            domain_type=read.text("domain_type", "kvm"),
            memory_mib=memory,
            max_memory_mib=read.integer("max_memory_mib", None),
            memory_slots=read.integer("memory_slots", DEFAULT_MEMORY_SLOTS),
            vcpus=vcpus,
            max_vcpus=max_vcpus,
            cpu_model=read.text("cpu_model", None),
            cpu_cores=read.integer("cpu_cores", 1),
            cpu_threads=read.integer("cpu_threads", 1),
            machine=read.text("machine", DEFAULT_MACHINE),
            arch=read.text("arch", "x86_64"),
            os_type=read.text("os_type", "hvm"),
            emulator=read.text("emulator", DEFAULT_EMULATOR),
            kernel=kernel,
            initrd=read.text("initrd", None),
            cmdline=read.text("cmdline", None),
            pcie_root_ports=read.count("pcie_root_ports", DEFAULT_PCIE_ROOT_PORTS),
            custom_properties=read.scalars("custom_properties"),
            metadata=_metadata_values(read.scalars("metadata"), memory),
            qos=read.scalars("qos"),
        )


def _metadata_values(given: dict[str, Scalar], memory_mib: int) -> dict[str, Scalar]:
    """The VM-level values the engine always sends, overridden by the definition's own."""
    values: dict[str, Scalar] = {
        "clusterVersion": DEFAULT_CLUSTER_VERSION,
        "launchPaused": False,
        "minGuaranteedMemoryMb": memory_mib,
        "resumeBehavior": "auto_resume",
    }
    values.update(given)
    return values


class _Reader:
    """Typed reads of one definition object; each error names the VM and the key."""

    __slots__ = ("vm_id", "raw")

    def __init__(self, vm_id: str, raw: Mapping[str, Any]) -> None:
        self.vm_id = vm_id
        self.raw = raw

    def _fail(self, key: str, wanted: str) -> DefinitionError:
        return DefinitionError(
            f"VM {self.vm_id}: definition.{key} must be {wanted}, not {self.raw[key]!r}"
        )

    def integer(self, key: str, default: int | None) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._fail(key, "a positive integer")
        return value

    def count(self, key: str, default: int) -> int:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 256:
            raise self._fail(key, "an integer from 0 to 256")
        return value

    def text(self, key: str, default: str | None) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string")
        return value

    def scalars(self, key: str) -> dict[str, Scalar]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(v, (str, int, float, bool)) for v in value.values()
        ):
            raise self._fail(key, "an object of strings, numbers and booleans")
        return {str(k): v for k, v in value.items()}
