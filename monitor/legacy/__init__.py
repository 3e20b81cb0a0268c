"""The legacy seam: correlated devices as the old-format dicts, and the DB changes they imply.

``converter.convert`` builds the declared dicts of ``dicts``; ``decide.decide`` turns
them, with the VM's rows, into ``VmChanges`` (pure: the store applies them).
"""

from monitor.legacy.converter import convert
from monitor.legacy.decide import decide
from monitor.legacy.dicts import ConvertedVm, LegacyDevice, LegacyVmDevices

__all__ = ["ConvertedVm", "LegacyDevice", "LegacyVmDevices", "convert", "decide"]
