"""``tools/paired/run`` (docs/performance.md, "Measuring a change on a noisy machine")
keeps working: a tiny run against this repository's HEAD, on SQLite, in its two halves (it needs the git
clone, which is what the tests run in).

Times are not asserted; that both versions ticked every kind, and that the report says
so, is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "paired" / "run"


def test_the_paired_tool_compares_head_with_the_tree():
    done = subprocess.run(
        [str(TOOL), "HEAD", "--vms", "20", "--hosts", "2", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "20 VMs on 2 hosts, sqlite, 1 rounds" in out
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=ROOT, check=True).stdout.strip()
    assert re.search(rf"^\s+{head}: full .* ms a host; partial .*; steady ", out, re.M), out
    assert re.search(r"^\s+tree: full .* ms a host; partial .*; steady ", out, re.M), out
    # each half: 2 hosts x 1 round of full ticks; 2 hosts x 3 repeats of steady and
    # partial ones; the two halves' medians and their geometric mean
    for kind, pairs in (("full", 2), ("steady", 6), ("partial", 6)):
        found = re.search(rf"{kind} tick of a host: (\d+\.\d{{3}}) \(median of {pairs} pairs: "
                          r"base started first (\d+\.\d{3}), tree first (\d+\.\d{3})\)", out)
        assert found, out
        mean, base_first, tree_first = map(float, found.groups())
        assert abs(mean - (base_first * tree_first) ** 0.5) <= 0.0015, out
    assert out.count("started first: done") == 2, out
