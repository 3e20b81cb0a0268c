"""Adapters: what happens to one VM's correlated devices (docs/architecture.md, "Adapters")."""

from monitor.adapters.base import Correlated, Decided, MonitoringAdapter, TransactionalAdapter
from monitor.adapters.database import DatabaseAdapter
from monitor.adapters.jsonlines import JsonLinesAdapter

__all__ = ["Correlated", "DatabaseAdapter", "Decided", "JsonLinesAdapter", "MonitoringAdapter",
           "TransactionalAdapter"]
