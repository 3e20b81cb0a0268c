"""Python's cyclic garbage collector, paused while bulk work builds objects without cycles.

A tick allocates a few hundred thousand short-lived objects per host (parsed devices,
rows, legacy dicts, row changes), none of them in a reference cycle: reference counting
frees them all. The collector would still scan them, and, as a batch's survivors pile
up, rescan every object of the process in full collections: measured at a fifth of a
10,000-VM full tick (docs/performance.md, "The fourth wave"). So the tick, and the bulk
reads of the store, run with it paused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, and back on after it if it was on before.

    Only a collector this call turned off is turned back on, so overlapping blocks in
    other threads never leave it off; cycles made meanwhile wait for the next collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
