"""Settings: where the database is, which hosts to poll, intervals and limits.

Precedence for the database URL (BRIEF section 7): ``--db``, then ``MONITOR_DB_URL``,
then the config file's ``db``, then an SQLite file in the per-user data folder.
The config file is TOML; see docs/configuration.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import UsageError

ENV_DB_URL = "MONITOR_DB_URL"
ENV_CONFIG = "MONITOR_CONFIG"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "monitor"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'monitor.db'}"


@dataclass(slots=True, frozen=True)
class HostSettings:
    name: str
    uri: str | None = None  # a libvirt URI
    fixture: str | None = None  # a recorded fixture directory, played in a loop


@dataclass(slots=True, frozen=True)
class Limits:
    max_xml_bytes: int = 8 * 1024 * 1024
    max_devices: int = 4096
    max_depth: int = 64


@dataclass(slots=True, frozen=True)
class Settings:
    db_url: str
    hosts: tuple[HostSettings, ...] = ()
    interval_s: float = 5.0
    batch_size: int = 50
    backoff_max_s: float = 300.0
    limits: Limits = field(default_factory=Limits)
    metrics_address: str | None = None  # "127.0.0.1:9108" serves /metrics and /healthz
    metrics_allow_remote: bool = False  # bind metrics_address beyond the loopback
    health_stale_s: float = 120.0
    config_path: str | None = None


def read_config(path: str | None) -> tuple[dict, str | None]:
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        return {}, None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle), path
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path}: {error}") from None


def resolve_db_url(cli_value: str | None, config: dict) -> str:
    return cli_value or os.environ.get(ENV_DB_URL) or config.get("db") or default_db_url()


def read_limits(raw, path: str | None) -> Limits:
    """``[limits]``: known names only, each a positive whole number (a bool is not one)."""
    if not isinstance(raw, dict):
        raise UsageError(f"config {path}: [limits] must be a table")
    known = Limits.__dataclass_fields__
    for name, value in raw.items():
        if name not in known:
            raise UsageError(f"config {path}: [limits] {name} is not one of "
                             f"{', '.join(known)}")
        if type(value) is not int or value <= 0:
            raise UsageError(f"config {path}: [limits] {name} must be a positive whole "
                             f"number, not {value!r}")
    return Limits(**raw)


def _optional_text(table: dict, name: str, path: str | None) -> str | None:
    value = table.get(name)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"config {path}: {name} must be a string, not {value!r}")
    return value


def load_settings(db: str | None = None, config: str | None = None) -> Settings:
    raw, path = read_config(config)
    worker = raw.get("worker", {})
    limits = raw.get("limits", {})
    hosts = []
    for entry in raw.get("hosts", []):
        if "name" not in entry or not (entry.get("uri") or entry.get("fixture")):
            raise UsageError(f"config {path}: each [[hosts]] needs name and uri or fixture")
        hosts.append(
            HostSettings(
                name=str(entry["name"]),
                uri=entry.get("uri"),
                fixture=entry.get("fixture"),
            )
        )
    try:
        return Settings(
            db_url=resolve_db_url(db, raw),
            hosts=tuple(hosts),
            interval_s=float(worker.get("interval", 5.0)),
            batch_size=int(worker.get("batch_size", 50)),
            backoff_max_s=float(worker.get("backoff_max", 300.0)),
            limits=read_limits(limits, path),
            metrics_address=_optional_text(worker, "metrics_address", path),
            metrics_allow_remote=worker.get("metrics_allow_remote", False) is True,
            health_stale_s=float(worker.get("health_stale", 120.0)),
            config_path=path,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"config {path}: {error}") from None
