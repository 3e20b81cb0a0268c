"""``tools/paired/scaling`` (docs/performance.md, "The fourteenth wave") keeps working: a
tiny run on SQLite.

Times are not asserted; that both fleets were loaded and every host's full tick applied
all its VMs (the tool raises on a tick's errors, and a steady tick would be far below a
full one, which the median ratio would show), and that the report says what it
measured, is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "paired" / "scaling"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)


def test_the_scaling_tool_ticks_both_fleets_side_by_side():
    done = run_tool("--vms", "200", "--hosts", "20", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "200 VMs on 20 hosts against 20 on 2, sqlite, 2 rounds in each of two halves" in out
    assert out.count("round 2/2 done") == 2
    for fleet in ("small", "whole"):
        assert re.search(rf"^  {fleet} fleet: full tick of a host, mean +\d+\.\d ms, "
                         r"median +\d+\.\d ms$", out, re.M), out
    found = re.search(r"^  scaling, whole / small, a host's full tick: (\d+\.\d+) \(median "
                      r"of 40 pairs: small started first (\d+\.\d+), whole first "
                      r"(\d+\.\d+)\); ratio of the means (\d+\.\d+)$", out, re.M)
    assert found, out
    # Both fleets' ticks are full ones of ten VMs each: the same work within a few times,
    # where a tick that found nothing changed would be tens of times faster.
    assert all(0.2 < float(value) < 5 for value in found.groups()), out


def test_a_fleet_the_scaling_fleet_cannot_mirror_is_refused():
    done = run_tool("--vms", "200", "--hosts", "15")
    assert done.returncode == 2 and "--hosts of 10" in done.stderr
