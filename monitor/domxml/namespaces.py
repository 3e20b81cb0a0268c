"""The XML namespaces the engine reads and writes, named once.

oVirt writes two elements into libvirt's ``<metadata>``: ``vm`` in ``ovirt-vm``'s
namespace and ``qos`` in ``ovirt-tune``'s (docs/run-vm.md). The reader finds them by
URI, whatever prefix a document uses; the writer declares the prefixes oVirt uses.
"""

from __future__ import annotations

OVIRT_VM = "http://ovirt.org/vm/1.0"
OVIRT_TUNE = "http://ovirt.org/vm/tune/1.0"
NSMAP = {"ovirt-tune": OVIRT_TUNE, "ovirt-vm": OVIRT_VM}
VM_TAG = f"{{{OVIRT_VM}}}vm"
QOS_TAG = f"{{{OVIRT_TUNE}}}qos"


def in_vm(tag: str) -> str:
    """``tag`` in ovirt-vm's namespace, as lxml names it (``{uri}tag``)."""
    return f"{{{OVIRT_VM}}}{tag}"
