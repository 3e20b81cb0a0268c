"""Run VM: the whole Domain XML written from a VM record and its device rows.

A pipeline of small section writers (KubeVirt's converter style), each owning one part
of ``<domain>``; device elements come from ``writers``, ``<metadata>`` from
``metadata_writer``, and both read one ``device_plan`` so they agree on order, aliases
and disk names. The output is a pure function of its input: the same VM and rows, in
any row order, give the same bytes. docs/run-vm.md lists every input key and default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from lxml import etree

from monitor.domxml.device_plan import PlannedDevice, plan_devices
from monitor.domxml.metadata_writer import metadata_children
from monitor.domxml.namespaces import NSMAP
from monitor.domxml.vm_definition import VmDefinition
from monitor.domxml.writers import device_element, dimm_size_mib
from monitor.errors import DefinitionError
from monitor.model.rows import DeviceRow, VmRecord

Element = etree._Element


class DomainPlan(NamedTuple):
    definition: VmDefinition
    devices: tuple[PlannedDevice, ...]

    @property
    def dimm_mib(self) -> int:
        return sum(dimm_size_mib(d.row) for d in self.devices if d.row.type == "memory")


Section = Callable[[DomainPlan], Sequence[Element]]


def _sub(parent: Element, tag: str, text: str | None = None, **attrs: str) -> Element:
    element = etree.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _element(tag: str, text: str | None = None, **attrs: str) -> Element:
    element = etree.Element(tag, attrs)
    element.text = text
    return element


def identity(plan: DomainPlan) -> Sequence[Element]:
    return (_element("name", plan.definition.name), _element("uuid", plan.definition.vm_id))


def metadata(plan: DomainPlan) -> Sequence[Element]:
    element = etree.Element("metadata")
    element.extend(metadata_children(plan.definition, plan.devices))
    return (element,)


def memory(plan: DomainPlan) -> Sequence[Element]:
    """Boot memory plus DIMMs, as libvirt counts it; ``maxMemory`` (the hot-plug
    ceiling with its DIMM slots) only when asked for or when DIMMs need it."""
    definition = plan.definition
    total = definition.memory_mib + plan.dimm_mib
    sections = []
    if definition.max_memory_mib is not None or plan.dimm_mib:
        ceiling = definition.max_memory_mib or max(4 * definition.memory_mib, total)
        if ceiling < total:
            raise DefinitionError(
                f"VM {definition.vm_id}: max_memory_mib {ceiling} < memory with DIMMs {total}"
            )
        sections.append(_element("maxMemory", str(ceiling), slots=str(definition.memory_slots),
                                 unit="MiB"))
    sections.append(_element("memory", str(total), unit="MiB"))
    sections.append(_element("currentMemory", str(total), unit="MiB"))
    return sections


def vcpu(plan: DomainPlan) -> Sequence[Element]:
    definition = plan.definition
    element = _element("vcpu", str(definition.max_vcpus), placement="static")
    if definition.vcpus < definition.max_vcpus:
        element.set("current", str(definition.vcpus))
    return (element,)


def operating_system(plan: DomainPlan) -> Sequence[Element]:
    definition = plan.definition
    element = etree.Element("os")
    _sub(element, "type", definition.os_type, arch=definition.arch, machine=definition.machine)
    for tag in ("kernel", "initrd", "cmdline"):  # direct kernel boot, in libvirt's order
        value = getattr(definition, tag)
        if value is not None:
            _sub(element, tag, value)
    return (element,)


def features(plan: DomainPlan) -> Sequence[Element]:
    element = etree.Element("features")
    _sub(element, "acpi")
    return (element,)


def cpu(plan: DomainPlan) -> Sequence[Element]:
    """Topology from the vCPU ceiling, and one NUMA cell holding the boot memory
    (DIMMs name their node; libvirt needs a cell for memory hot-plug)."""
    definition = plan.definition
    per_socket = definition.cpu_cores * definition.cpu_threads
    if definition.max_vcpus % per_socket:
        raise DefinitionError(
            f"VM {definition.vm_id}: max_vcpus {definition.max_vcpus} is not a multiple "
            f"of cpu_cores x cpu_threads ({per_socket})"
        )
    element = etree.Element("cpu")
    if definition.cpu_model:
        element.set("match", "exact")
        _sub(element, "model", definition.cpu_model)
    _sub(element, "topology", sockets=str(definition.max_vcpus // per_socket), dies="1",
         cores=str(definition.cpu_cores), threads=str(definition.cpu_threads))
    last = definition.max_vcpus - 1
    numa = _sub(element, "numa")
    _sub(numa, "cell", id="0", cpus=f"0-{last}" if last else "0",
         memory=str(definition.memory_mib), unit="MiB")
    return (element,)


def clock(plan: DomainPlan) -> Sequence[Element]:
    element = _element("clock", offset="variable", adjustment="0")
    _sub(element, "timer", name="rtc", tickpolicy="catchup")
    _sub(element, "timer", name="pit", tickpolicy="delay")
    _sub(element, "timer", name="hpet", present="no")
    return (element,)


def lifecycle(plan: DomainPlan) -> Sequence[Element]:
    return (_element("on_poweroff", "destroy"), _element("on_reboot", "restart"),
            _element("on_crash", "destroy"))


def power_management(plan: DomainPlan) -> Sequence[Element]:
    element = etree.Element("pm")
    _sub(element, "suspend-to-mem", enabled="no")
    _sub(element, "suspend-to-disk", enabled="no")
    return (element,)


def devices(plan: DomainPlan) -> Sequence[Element]:
    element = etree.Element("devices")
    _sub(element, "emulator", plan.definition.emulator)
    element.extend(device_element(device, plan.definition) for device in plan.devices)
    return (element,)


# In libvirt's own order of <domain> children.
SECTIONS: tuple[Section, ...] = (
    identity, metadata, memory, vcpu, operating_system, features, cpu, clock,
    lifecycle, power_management, devices,
)


def build_domain_element(vm: VmRecord, rows: Sequence[DeviceRow]) -> Element:
    definition = VmDefinition.from_record(vm)
    plan = DomainPlan(definition, plan_devices(definition, rows))
    domain = etree.Element("domain", type=definition.domain_type, nsmap=NSMAP)
    for section in SECTIONS:
        domain.extend(section(plan))
    return domain


def build_domain_xml(vm: VmRecord, rows: Sequence[DeviceRow]) -> bytes:
    """The Domain XML that runs ``vm`` with its plugged ``rows`` (UTF-8, indented)."""
    domain = build_domain_element(vm, rows)
    etree.indent(domain, space="  ")
    return etree.tostring(domain, encoding="UTF-8", xml_declaration=True, pretty_print=True)
