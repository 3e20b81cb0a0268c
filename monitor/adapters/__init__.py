"""Monitoring adapters: what happens to one VM's converted devices (BRIEF section 2)."""

from monitor.adapters.base import MonitoringAdapter
from monitor.adapters.jsonlines import JsonLinesAdapter

__all__ = ["JsonLinesAdapter", "MonitoringAdapter"]
