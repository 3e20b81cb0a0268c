"""What a batch transaction writes, and on PostgreSQL how it is sent: one statement.

A tick applies its VMs in batches (docs/worker.md); each batch transaction writes the
hashes of the VMs it applied, their device-row changes, and the Domain XML of every VM
it read (``Tx.advance_and_write``). On PostgreSQL those writes are one statement: five
data-modifying ``WITH`` clauses (the hash advances, the row deletes, updates, inserts,
the last XMLs), each part's values in one parameter. The rows and the hashes travel as
JSON documents read with ``jsonb_to_recordset`` (encoded by the C JSON encoder, no
per-row parameter processing); the last XMLs as one binary parameter, their bytes end
to end. The server answers once, with what each part wrote.

Why one statement rather than a statement per part (docs/performance.md, "The
thirteenth wave"):

* a round trip each: a batch's writes waited for the server three times, each
  ~0.1 ms on a loopback, more across a network;
* never pipelined: psycopg's ``executemany`` (the hash advances and the last XMLs of a
  batch of several VMs, new rows) sends its statements in pipeline mode, where the
  server does not arm ``idle_in_transaction_session_timeout`` until the last one; a
  worker frozen in between would keep its host lease row locked (``prepared``). One
  statement is one request and one answer.

A part with nothing to write is an empty document: the statement's text is the same
for every batch, so the server plans it once per connection.

The parts of one statement run together, on one snapshot, so no two may touch the
same row: ``legacy.decide`` lists a device once, a VM's hash once, and a row it
deletes is never one it inserts (an insert is of a device no row has). A caller that
replaces a row by one with the same id (``Tx.apply_changes``) gets its deletes sent
first, on their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from monitor.model.changes import VmChanges
from monitor.store import prepared
from monitor.store.row_writes import KEY, UPDATED, row_values
from monitor.store.schema import vm_devices, vm_last_xml, vms


class HashAdvance(NamedTuple):
    """One VM's new hash, applied only if no newer report was applied before."""

    vm_id: str
    new_hash: str | None
    report_time: datetime
    status: str | None = None
    host: str | None = None


class LastXmls(NamedTuple):
    """The Domain XML of each VM a batch read, as fetched, kept for ``diagnose``."""

    items: Sequence[tuple[str, bytes | str]]  # vm id, the document's bytes
    fetched_at: datetime


class Written(NamedTuple):
    """What one batch statement wrote: VMs advanced, rows deleted, updated, inserted,
    last XMLs saved."""

    advanced: int
    deleted: int
    updated: int
    inserted: int
    saved: int

    @property
    def rows(self) -> int:
        return self.deleted + self.updated + self.inserted


def xml_bytes(xml: bytes | str) -> bytes:
    """A document as the ``xml`` column keeps it: bytes (text is UTF-8 encoded)."""
    return xml.encode() if isinstance(xml, str) else bytes(xml)


def _recordset(name: str, *columns: sa.Column) -> sa.TableValuedAlias:
    """``jsonb_to_recordset(:name) AS anon(col_1 TYPE, ...)``: the bound JSON array of
    objects as rows with these columns' names and types."""
    rows = sa.bindparam(name, type_=postgresql.JSONB)
    return (sa.func.jsonb_to_recordset(rows)
            .table_valued(*(sa.column(column.name, column.type) for column in columns))
            .render_derived(with_types=True))


# The hash advances: a status or host only where given (``coalesce``: NULL keeps it).
# The VMs are also named as an array of their ids (``= ANY(ARRAY(...))``, as
# ``repository._among_ids``): a plan made for the recordset alone, which the server
# takes for a hundred rows, scans ``vms`` whole (~0.9 ms for 3,000 VMs); for the array
# it reads them by the primary key.
_HASHES = _recordset("hashes", vms.c.id, vms.c.hash, vms.c.hash_time, vms.c.status,
                     vms.c.host)
_HASH_IDS = _recordset("hashes", vms.c.id)
_ADVANCED = (
    sa.update(vms)
    .where(vms.c.id == sa.any_(sa.func.array(sa.select(_HASH_IDS.c.id).scalar_subquery())),
           vms.c.id == _HASHES.c.id)
    .values(hash=_HASHES.c.hash, hash_time=_HASHES.c.hash_time, last_error_hash=sa.null(),
            last_error=sa.null(), status=sa.func.coalesce(_HASHES.c.status, vms.c.status),
            host=sa.func.coalesce(_HASHES.c.host, vms.c.host), version=vms.c.version + 1)
    .returning(vms.c.id)
    .cte("advanced")
)

_KEYS = _recordset("deletes", *(vm_devices.c[name] for name in KEY))
_DELETED = (
    sa.delete(vm_devices)
    .where(vm_devices.c.vm_id == _KEYS.c.vm_id, vm_devices.c.device_id == _KEYS.c.device_id)
    .returning(vm_devices.c.vm_id)
    .cte("deleted")
)

_UPDATES = _recordset("updates", *(vm_devices.c[name] for name in (*UPDATED, *KEY)))
_UPDATED = (
    sa.update(vm_devices)
    .where(vm_devices.c.vm_id == _UPDATES.c.vm_id,
           vm_devices.c.device_id == _UPDATES.c.device_id)
    .values({name: _UPDATES.c[name] for name in UPDATED})
    .returning(vm_devices.c.vm_id)
    .cte("updated")
)

_INSERTS = _recordset("inserts", *vm_devices.c)
_INSERTED = (
    sa.insert(vm_devices)
    .from_select([column.name for column in vm_devices.c], sa.select(*_INSERTS.c))
    .returning(vm_devices.c.vm_id)
    .cte("inserted")
)

# The last XMLs: their bytes end to end in one binary parameter, each cut out by its
# place (``substring``, 1-based). An array of documents would go as text, each byte
# escaped by the client (~0.25 ms for a 9 KB document); one ``bytea`` goes as it is.
_XMLS = (sa.func.jsonb_to_recordset(sa.bindparam("xml_parts", type_=postgresql.JSONB))
         .table_valued(sa.column("vm_id", sa.Text), sa.column("start", sa.Integer),
                       sa.column("length", sa.Integer))
         .render_derived(with_types=True))
_SAVE = postgresql.insert(vm_last_xml).from_select(
    ["vm_id", "xml", "fetched_at"],
    sa.select(_XMLS.c.vm_id,
              sa.func.substring(sa.bindparam("xml_bytes", type_=sa.LargeBinary),
                                _XMLS.c.start, _XMLS.c.length, type_=sa.LargeBinary),
              sa.bindparam("fetched_at", type_=vm_last_xml.c.fetched_at.type)))
_SAVED = (
    _SAVE.on_conflict_do_update(index_elements=[vm_last_xml.c.vm_id],
                                set_={"xml": _SAVE.excluded.xml,
                                      "fetched_at": _SAVE.excluded.fetched_at})
    .returning(vm_last_xml.c.vm_id)
    .cte("saved")
)

# The statement: what each part wrote, counted.
_BATCH = sa.select(*(sa.select(sa.func.count()).select_from(part).scalar_subquery()
                     for part in (_ADVANCED, _DELETED, _UPDATED, _INSERTED, _SAVED)))


# The most bytes of documents one statement carries: a value is at most 1 GB on
# PostgreSQL. A batch's documents are far fewer (50 at the 8 MB limit: 400 MB); more
# go in further statements of the same transaction.
XML_BYTES_PER_STATEMENT = 256 * 1024 * 1024


def write_postgresql(connection: Connection, advances: Sequence[HashAdvance],
                     changes: Sequence[VmChanges], last_xmls: LastXmls | None) -> Written:
    """The batch's writes as one statement (more where a row is replaced by one with the
    same id: its deletes first; or where the documents pass
    ``XML_BYTES_PER_STATEMENT``: the rest after)."""
    deletes = [{"vm_id": change.vm_id, "device_id": device_id}
               for change in changes for device_id in change.deletes]
    inserts = [row_values(row) for change in changes for row in change.inserts]
    first = None
    if deletes and inserts and _replaced(deletes, inserts):
        first = _send(connection, deletes=deletes)
        deletes = []
    xml_groups = _xml_groups(last_xmls)
    written = _send(
        connection,
        hashes=[_hash_values(item) for item in advances],
        deletes=deletes,
        updates=[
            {"address": update.address, "alias": update.alias,
             "is_plugged": update.is_plugged, "logical_name": update.logical_name,
             "host_device": update.host_device, "vm_id": change.vm_id,
             "device_id": update.device_id}
            for change in changes
            for update in change.updates
        ],
        inserts=inserts,
        last_xmls=next(xml_groups, None),
    )
    saved = sum(_send(connection, last_xmls=more).saved for more in xml_groups)
    if first is not None:
        written = written._replace(deleted=first.deleted)
    return written._replace(saved=written.saved + saved)


def _xml_groups(last_xmls: LastXmls | None) -> Iterator[LastXmls]:
    """``last_xmls`` in groups of at most ``XML_BYTES_PER_STATEMENT`` bytes (a larger
    document alone)."""
    if last_xmls is None:
        return
    group: list[tuple[str, bytes | str]] = []
    size = 0
    for vm_id, xml in last_xmls.items:
        document = xml_bytes(xml)
        if group and size + len(document) > XML_BYTES_PER_STATEMENT:
            yield LastXmls(group, last_xmls.fetched_at)
            group, size = [], 0
        group.append((vm_id, document))
        size += len(document)
    yield LastXmls(group, last_xmls.fetched_at)


def _send(connection: Connection, *, hashes=(), deletes=(), updates=(), inserts=(),
          last_xmls: LastXmls | None = None) -> Written:
    parts, documents = _xml_parts(last_xmls.items if last_xmls is not None else ())
    params = {
        "hashes": hashes,
        "deletes": deletes, "updates": updates, "inserts": inserts,
        "xml_parts": parts, "xml_bytes": documents,
        # Any time will do for no XML: the part then writes nothing.
        "fetched_at": last_xmls.fetched_at if last_xmls is not None else _EPOCH,
    }
    return Written(*prepared.fetch(connection, _BATCH, params)[0])


def _xml_parts(items: Sequence[tuple[str, bytes]]) -> tuple[list[dict], bytes]:
    """Each VM's document (bytes, as ``_xml_groups`` gives them) by its place in the
    documents' bytes end to end; those bytes."""
    parts = []
    start = 1
    for vm_id, document in items:
        parts.append({"vm_id": vm_id, "start": start, "length": len(document)})
        start += len(document)
    return parts, b"".join(document for _vm_id, document in items)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _replaced(deletes: list[dict], inserts: list[dict]) -> bool:
    """Whether a row inserted has the key of a row deleted in the same batch."""
    deleted = {(key["vm_id"], key["device_id"]) for key in deletes}
    return any((row["vm_id"], row["device_id"]) in deleted for row in inserts)


def _hash_values(item: HashAdvance) -> dict[str, str | None]:
    """One hash advance as its JSON object: the report time as ISO text in UTC, which
    ``timestamptz`` reads back to the microsecond."""
    report_time = item.report_time
    if report_time.tzinfo is None:  # as the column type refuses one (``UtcDateTime``)
        raise ValueError(f"naive datetime given to the store: {report_time.isoformat()}")
    return {"id": item.vm_id, "hash": item.new_hash,
            "hash_time": report_time.astimezone(UTC).isoformat(),
            "status": item.status, "host": item.host}
