"""The one place that builds things from settings: stores, tick contexts, adapters.

Nothing is built at import time; the CLI verbs call these and pass the results in.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from monitor.adapters.base import MonitoringAdapter
from monitor.adapters.database import DatabaseAdapter
from monitor.adapters.jsonlines import JsonLinesAdapter
from monitor.errors import UsageError
from monitor.settings import Settings, load_settings
from monitor.store import Store
from monitor.tick.context import TickContext
from monitor.worker.stale_locks import release_dead_workers_locks


def settings_from(args) -> Settings:
    return load_settings(db=getattr(args, "db", None), config=getattr(args, "config", None))


def open_store(settings: Settings) -> Store:
    return Store.open(settings.db_url)


def worker_name() -> str:
    """A name for this start of this process: ``monitor@<hostname>:<pid>/<start id>``.

    It is the holder of the devices locks its ticks take and, under ``monitor run``,
    the owner of its host leases. The random start id tells two starts with one pid
    apart (a container restarted): ``monitor.worker.stale_locks`` reads the rest.
    """
    return f"monitor@{socket.gethostname()}:{os.getpid()}/{secrets.token_hex(4)}"


def tick_context(store: Store, settings: Settings, emitters: Sequence[MonitoringAdapter] = (),
                 holder: str | None = None) -> TickContext:
    """The context of every verb that ticks (run, replay, bench), as ``holder`` (default:
    a new ``worker_name``), with its adapters: the database one, applied inside each
    apply transaction, and ``emitters`` (``emit_dicts``), called after each commit
    (docs/architecture.md, "Adapters").

    First the devices locks of this machine's dead workers are released, so a verb run
    after a crash applies every VM rather than skip the crashed one's (docs/operations.md).
    """
    holder = holder or worker_name()
    release_dead_workers_locks(store, holder)
    return TickContext(
        store=store,
        holder=holder,
        limits=settings.limits,
        batch_size=settings.worker.batch_size,
        database=DatabaseAdapter(),
        emitters=tuple(emitters),
    )


@contextmanager
def emit_dicts(target: str | None) -> Iterator[list[JsonLinesAdapter]]:
    """``--emit-dicts FILE|-``: the JSON-lines adapter, or nothing."""
    if not target:
        yield []
        return
    if target == "-":
        yield [JsonLinesAdapter(sys.stdout)]
        return
    try:
        stream: TextIO = open(target, "w", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--emit-dicts {target}: {error.strerror}") from None
    with stream:
        yield [JsonLinesAdapter(stream)]
