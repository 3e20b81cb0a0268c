"""A node file for libvirt's test driver: five domains in three run states, and the
domain XML the tests change them with (tests of the libvirt host source).
"""

from __future__ import annotations

RUNNING = ["11111111-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002",
           "33333333-0000-4000-8000-000000000003"]
PAUSED = "44444444-0000-4000-8000-000000000004"
SHUT_OFF = "55555555-0000-4000-8000-000000000005"


def domain_xml(uuid: str, name: str, disk_alias: str, extra: str = "", state: str = "") -> str:
    """A test-driver domain: a disk with a ua- alias, a NIC, and an optional run state."""
    return f"""
  <domain type='test'>
    <name>{name}</name>
    <uuid>{uuid.upper()}</uuid>
    <memory unit='KiB'>1048576</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'>
        <source file='/guest/{name}.img'/>
        <target dev='vda' bus='virtio'/>
        <alias name='ua-{disk_alias}'/>
      </disk>
      <interface type='network'>
        <mac address='52:54:00:00:00:{name[-1]}{name[-1]}'/>
        <source network='default'/>
      </interface>{extra}
    </devices>{state}
  </domain>"""


def node_xml() -> str:
    domains = [domain_xml(uuid, f"vm{n}", f"dddddddd-0000-4000-8000-00000000000{n}")
               for n, uuid in enumerate(RUNNING, start=1)]
    domains.append(domain_xml(PAUSED, "vm4", "dddddddd-0000-4000-8000-000000000004",
                              state="\n    <test:runstate>3</test:runstate>"))
    domains.append(domain_xml(SHUT_OFF, "vm5", "dddddddd-0000-4000-8000-000000000005",
                              state="\n    <test:runstate>5</test:runstate>"))
    body = "".join(domains)
    return f"<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>{body}\n</node>\n"
