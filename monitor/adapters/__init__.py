"""Adapters: what happens to one VM's correlated devices (docs/architecture.md, "Adapters")."""

from monitor.adapters.base import Correlated, MonitoringAdapter, TransactionalAdapter
from monitor.adapters.database import DatabaseAdapter
from monitor.adapters.jsonlines import JsonLinesAdapter

__all__ = ["Correlated", "DatabaseAdapter", "JsonLinesAdapter", "MonitoringAdapter",
           "TransactionalAdapter"]
