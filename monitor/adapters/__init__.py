"""Monitoring adapters: what happens to one VM's converted devices (docs/architecture.md, "The flow of one tick")."""

from monitor.adapters.base import MonitoringAdapter
from monitor.adapters.jsonlines import JsonLinesAdapter

__all__ = ["JsonLinesAdapter", "MonitoringAdapter"]
