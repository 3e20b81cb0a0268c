"""monitor: device-monitoring reconciliation engine for virtualization managers.

Nothing happens at import time: engines, connections and schedulers are built in
``monitor.wiring`` from settings and passed in.
"""

__version__ = "0.1.0"
