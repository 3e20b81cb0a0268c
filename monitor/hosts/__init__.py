"""Host sources: where VM reports and Domain XML come from.

Every source speaks the ``HostSource`` protocol (``source.py``): poll the VMs' status
and devices hash, dump the XML of a list of VMs in one call, raise the typed host
errors of ``monitor.errors``. ``replay`` plays a recorded fixture (``fixture.py``
reads it, ``fixture_writer.py`` writes it); ``libvirt_source`` is the only module
that imports libvirt.
"""
