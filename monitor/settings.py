"""Settings: where the database is, which hosts to poll, intervals and limits.

Precedence for the database URL: ``--db``, then ``MONITOR_DB_URL``, then the config
file's ``db``, then an SQLite file in the per-user data folder.

The config file is TOML, checked whole against one schema (the pydantic models below,
the only users of pydantic): an unknown key or section anywhere, a value of the wrong
type or out of its range is a one-line ``UsageError`` naming the file and the key, at
start. A new setting is one line in its section's model: its name as the file spells
it, its type, its default and its range. docs/configuration.md lists every setting.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.errors import UsageError
from monitor.hosts.source import is_host_name

ENV_DB_URL = "MONITOR_DB_URL"
ENV_CONFIG = "MONITOR_CONFIG"

DAY_S = 86_400.0
MIN_LEASE_TTL_S = 2.0
# ``monitor run`` ticks at most this many hosts at once, a thread each
# (``monitor.worker.scheduler``); the store's pool holds a connection for each of them
# and for the lease keeper (``monitor.store.engine``).
MAX_TICK_THREADS = 16


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "monitor"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'monitor.db'}"


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6) -> (host, port), or a ``ValueError``."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if (not colon or not host or not (port_text.isascii() and port_text.isdigit())
            or int(port_text) > 65535):
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9108")
    return host, int(port_text)


def _checked_address(text: str | None) -> str | None:
    if text is not None:
        listen_address(text)
    return text


def _checked_host_name(name: str) -> str:
    if not is_host_name(name):
        raise ValueError(f"{name!r}: use letters, digits, '.', '_', '-' (a name, never a URI)")
    return name


class Section(BaseModel):
    """One table of the file: known keys only, TOML's own types, finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# 600 characters of UTF-8 (4 bytes each at worst) and a VM id fit PostgreSQL's btree
# entry limit of 2,704 bytes: the most an alias may be, since aliases are indexed.
MAX_STORABLE_VALUE_CHARS = 600


class Limits(Section):
    """``[limits]``: what one input may hold (docs/operations.md, "Limits").

    The defaults sit far above any real document (the corpus's largest Domain XML:
    30 KB, 566 elements, 9 attributes on one element, a text of 5,464 characters, a
    value of 187), and low enough that the worst document inside them costs a small
    multiple of parsing it (tests/test_worst_documents.py).
    """

    max_xml_bytes: int = Field(8 * 1024 * 1024, ge=1, le=256 * 1024 * 1024)
    max_devices: int = Field(4096, ge=1, le=100_000)
    max_depth: int = Field(64, ge=1, le=255)  # libxml2 itself stops at 256 levels
    max_elements: int = Field(100_000, ge=1, le=10_000_000)  # in one Domain XML
    # Attributes of one element the engine reads whole (<address>, metadata <device>);
    # at least 16, the most the device reader takes without counting (domxml/attributes.py).
    max_attributes: int = Field(256, ge=16, le=4096)
    max_text_chars: int = Field(1024 * 1024, ge=1, le=256 * 1024 * 1024)  # metadata text
    # One value a row stores from the XML: an alias, an address attribute, a device's
    # type and name, the VM's name.
    max_value_chars: int = Field(512, ge=1, le=MAX_STORABLE_VALUE_CHARS)
    max_json_bytes: int = Field(256 * 1024 * 1024, ge=1, le=16 * 1024 * 1024 * 1024)


class WorkerSettings(Section):
    """``[worker]``: the worker's pace, batches, metrics and health (seconds are floats)."""

    interval: float = Field(5.0, gt=0, le=DAY_S)
    batch_size: int = Field(50, ge=1, le=10_000)
    backoff_max: float = Field(300.0, gt=0, le=DAY_S)
    metrics_address: Annotated[str | None, AfterValidator(_checked_address)] = None
    metrics_allow_remote: bool = False
    health_stale: float = Field(120.0, gt=0, le=DAY_S)
    stall_warn: float = Field(30.0, gt=0, le=DAY_S)  # log a tick running this long
    # Every libvirt VM's XML read again this often (docs/worker.md, "Libvirt hosts").
    resync_interval: float = Field(300.0, gt=0, le=DAY_S)
    # Host leases (monitor run, docs/operations.md "Many workers"); None: 3 intervals,
    # at least MIN_LEASE_TTL_S (``lease_ttl_for``). Shorter would be lost while all is
    # well: a renewal may wait for the database (an SQLite write lock, a busy server).
    lease_ttl: float | None = Field(None, ge=2, le=3600)
    max_hosts: int | None = Field(None, ge=1, le=1_000_000)  # None: no cap

    def lease_ttl_for(self, interval_s: float) -> float:
        """The lease TTL for a worker ticking every ``interval_s`` (the command line's
        ``--interval`` may differ from ``interval``)."""
        if self.lease_ttl is not None:
            return self.lease_ttl
        return max(3 * interval_s, MIN_LEASE_TTL_S)


class HostSettings(Section):
    """One ``[[hosts]]``: a name and a libvirt URI, or a name and a recorded fixture."""

    name: Annotated[str, AfterValidator(_checked_host_name)]
    uri: str | None = None  # a libvirt URI
    fixture: str | None = None  # a recorded fixture directory, played in a loop
    resync_interval: float | None = Field(None, gt=0, le=DAY_S)  # [worker]'s when absent

    @model_validator(mode="after")
    def _one_source(self) -> HostSettings:
        if (self.uri is None) == (self.fixture is None):
            raise ValueError(f"host {self.name}: give uri or fixture (exactly one)")
        if self.fixture is not None and self.resync_interval is not None:
            raise ValueError(f"host {self.name}: resync_interval is for a libvirt host (uri), "
                             "not a fixture")
        return self


def _distinct_names(hosts: tuple[HostSettings, ...]) -> tuple[HostSettings, ...]:
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise ValueError(f"two [[hosts]] are named {host.name!r}")
        seen.add(host.name)
    return hosts


class ConfigFile(Section):
    """The whole file."""

    db: str | None = None
    worker: WorkerSettings = WorkerSettings()
    limits: Limits = Limits()
    hosts: Annotated[tuple[HostSettings, ...], AfterValidator(_distinct_names)] = Field(
        (), strict=False)  # TOML gives a list


@dataclass(slots=True, frozen=True)
class Settings:
    db_url: str
    hosts: tuple[HostSettings, ...] = ()
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    limits: Limits = field(default_factory=Limits)
    config_path: str | None = None  # the file the settings came from, if any


def read_config(path: str | None) -> tuple[dict, str | None]:
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        return {}, None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle), path
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path}: is a folder") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path}: {error}") from None


def check_config(raw: dict, path: str | None) -> ConfigFile:
    """The file's tables as typed values, or a one-line ``UsageError``."""
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as invalid:
        problems = invalid.errors(include_url=False)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"config {path}: {describe_problem(problems[0])}{more}") from None


def host_settings(**values) -> HostSettings:
    """A host named on the command line, or a one-line ``UsageError``."""
    try:
        return HostSettings(**values)
    except ValidationError as invalid:
        raise UsageError(f"host {describe_problem(invalid.errors()[0])}") from None


def load_settings(db: str | None = None, config: str | None = None) -> Settings:
    raw, path = read_config(config)
    checked = check_config(raw, path)
    return Settings(
        db_url=db or os.environ.get(ENV_DB_URL) or checked.db or default_db_url(),
        hosts=checked.hosts,
        worker=checked.worker,
        limits=checked.limits,
        config_path=path,
    )


# --- one line per problem ----------------------------------------------------------------

_EXPECTED = {
    "float_type": "a number", "float_parsing": "a number",
    "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string",
    "model_type": "a table", "model_attributes_type": "a table", "dict_type": "a table",
    "tuple_type": "a list", "list_type": "a list",
    "finite_number": "a finite number",
}
_BOUNDS = {"greater_than": ("gt", "more than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def describe_problem(problem: dict) -> str:
    """``[worker] interval: expected a number, got "fast"`` from one pydantic error."""
    loc, kind, value = problem["loc"], problem["type"], problem.get("input")
    where = _where(loc)
    if kind == "extra_forbidden":
        return f"{where}: unknown {_what(value)}{_did_you_mean(loc)}"
    if kind == "tuple_type" and _model_of(_field(loc).annotation) is not Section:
        return f"{where}: expected [[{loc[-1]}]] tables, got {_shown(value)}"
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}, got {_shown(value)}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        return f"{where}: must be {words} {problem['ctx'][name]:g}, got {_shown(value)}"
    if kind == "missing":
        return f"{where}: missing (required)"
    if kind == "value_error":
        return f"{where}: {problem['ctx']['error']}"
    return f"{where}: {problem['msg']}, got {_shown(value)}"


def _where(loc: tuple) -> str:
    """``[worker] interval``, ``[[hosts]] #2 name``, or a top-level key as it is."""
    if not loc:
        return "the file"
    if len(loc) == 1:
        return str(loc[0])
    head, rest = loc[0], list(loc[1:])
    if isinstance(rest[0], int):
        head = f"[[{head}]] #{rest.pop(0) + 1}"
    else:
        head = f"[{head}]"
    return " ".join([head, *map(str, rest)])


def _what(value) -> str:
    if isinstance(value, dict):
        return "section"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "section"
    return "key"


def _table(loc: tuple) -> type[BaseModel]:
    """The model of the table that holds ``loc[-1]``."""
    model: type[BaseModel] = ConfigFile
    for part in loc[:-1]:
        if isinstance(part, str):
            model = _model_of(model.model_fields[part].annotation)
    return model


def _field(loc: tuple):
    return _table(loc).model_fields[loc[-1]]


def _did_you_mean(loc: tuple) -> str:
    """`` (did you mean hosts?)`` when a known name of that table is close."""
    model = _table(loc)
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_of(annotation) -> type[BaseModel]:
    """The section model inside ``Limits``, ``tuple[HostSettings, ...]``, ``Annotated[...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if argument is not Ellipsis:
            found = _model_of(argument)
            if found is not Section:
                return found
    return Section


def _shown(value) -> str:
    """A value as the file would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
