"""``monitor bench``: the engine timed on a synthetic fleet, beside lxml and xmltodict.

* ``fleet``: the VMs, their rows and their live XML in two layouts, made on demand;
* ``memory_source``: a host held in memory, a ``HostSource`` for ``run_tick``;
* ``runner``: the measurements (docs/performance.md).
"""
