"""Correlation: which row each reported device is (docs/matching.md).

``policy`` is the rule table, ``keys`` the per-kind identity keys, ``matcher`` the
engine, ``stable_id`` the derived ids of new unmanaged rows.
"""

from monitor.matching.matcher import (
    Attempt,
    Conflict,
    Match,
    MatchResult,
    NewDevice,
    Outcome,
    match,
)
from monitor.matching.policy import POLICY, Rule

__all__ = ["Attempt", "Conflict", "Match", "MatchResult", "NewDevice", "Outcome", "POLICY",
           "Rule", "match"]
