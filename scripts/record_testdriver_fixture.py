#!/usr/bin/env python3
"""Record fixtures/testdriver-recorded with `monitor record` from libvirt's test driver.

The node file holds two VMs written by the run-VM builder (so their devices carry
ua- aliases); the test driver starts them and adds what it adds (implicit controllers,
a video device). The recording's inventory is made from the first tick (no DB rows).

    python3 scripts/record_testdriver_fixture.py
    monitor replay fixtures/testdriver-recorded --write-expected --db sqlite:///:memory:
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_fixtures as scenarios  # noqa: E402

from monitor.cli import main  # noqa: E402
from monitor.domxml.builder import build_domain_xml  # noqa: E402

OUT = scenarios.REPO / "fixtures" / "testdriver-recorded"


def node_file(folder: Path) -> Path:
    domains = []
    for name in ("td-web", "td-db"):
        vm = scenarios.vm_record(name, host="testhost")
        xml = build_domain_xml(vm, scenarios.managed_rows(vm)).decode("utf-8")
        domains.append(xml.split("?>", 1)[-1].strip())
    path = folder / "node.xml"
    path.write_text("<node>\n" + "\n".join(domains) + "\n</node>\n", encoding="utf-8")
    return path


def main_() -> int:
    expected = OUT / "expected.json"
    kept = expected.read_bytes() if expected.exists() else None
    shutil.rmtree(OUT, ignore_errors=True)
    with tempfile.TemporaryDirectory() as folder:
        node = node_file(Path(folder))
        code = main(["record", "--host", f"test://{node}", "--host-name", "testhost",
                     "--out", str(OUT), "--ticks", "2", "--interval", "0",
                     "--db", "sqlite:///:memory:"])
    if kept is not None:
        expected.write_bytes(kept)
    return code


if __name__ == "__main__":
    raise SystemExit(main_())
