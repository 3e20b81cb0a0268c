"""The examples in README.md and docs/*.md run (docs/architecture.md, "Docs examples").

* Every ```toml block is a config file: it is checked by the settings loader (with
  ``--db`` pointed at a scratch database), and each fixture host in it is built, so a
  fixture host named after no host of its fixture fails here.
* Every ```sh block is a list of ``monitor ...`` commands (``#`` starts a comment). Each
  runs in-process through ``monitor.cli.main`` from the repository's root, in order,
  on a scratch database per block (``MONITOR_DB_URL``; a ``--db`` given is replaced by
  it, and ``monitor bench`` gets an empty one of its own). Placeholders are filled from
  ``PLACEHOLDERS``, optional parts in brackets (``[--xml FILE]``) are left out, and
  sizes are made small (``SMALL``: ``--vms 40``, ``--ticks 2``, ...).
* A block that must not run (an endless worker, a remote host, another program) carries
  a visible marker on the line right before its fence, with the reason:
  ``<!-- not run: an endless worker -->``. The markers are counted and listed in the
  output of ``test_blocks_not_run_say_why`` (``pytest -rA``); any other line in a
  ```sh block fails, asking for a marker or a ``monitor`` command.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import FIXTURES, REPO

from monitor.cli import main
from monitor.settings import load_settings
from monitor.worker.sources import build_source

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*\Z", re.S)
SCENARIO = FIXTURES / "disk-hotplug"  # the inventory, VM and XML the placeholders name
# Options set to a small value, and the ones a verb gets when the example has none.
SMALL = {"--vms": "40", "--hosts": "2", "--ticks": "2", "--runs": "1", "--interval": "0.05"}
ADDED = {"run": ("--ticks", "--interval"), "record": ("--interval",),
         "bench": ("--vms", "--hosts", "--runs")}
NEEDS_LIBVIRT = {"start", "record", "run"}  # monitor.toml has a test-driver host


class Block(NamedTuple):
    path: Path
    line: int
    language: str
    text: str
    not_run: str | None  # the marker's reason

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(*languages: str) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for fence in FENCE.finditer(text):
            if fence.group(1) not in languages:
                continue
            marker = NOT_RUN.search(text[:fence.start()].rstrip("\n").rsplit("\n", 1)[-1])
            found.append(Block(path, text.count("\n", 0, fence.start()) + 1, fence.group(1),
                               fence.group(2), marker.group(1) if marker else None))
    return found


def params(*languages: str, run: bool = True) -> list:
    return [pytest.param(block, id=block.name) for block in blocks(*languages)
            if (block.not_run is None) == run]


def scenario_vm() -> str:
    return json.loads((SCENARIO / "inventory.json").read_text())["vms"][0]["id"]


def placeholders(tmp_path: Path, url: str) -> dict[str, str]:
    """The one table: each placeholder of the docs and what it stands for here."""
    vm_id = scenario_vm()
    fixture_copy = tmp_path / "fixture-copy"
    shutil.copytree(SCENARIO, fixture_copy)
    config = tmp_path / "monitor.toml"
    config.write_text(f'[[hosts]]\nname = "host-a"\nfixture = "{SCENARIO}"\n\n'
                      f'[[hosts]]\nname = "testhost"\nuri = "test:///default"\n')
    return {
        "VM_ID": vm_id,
        "URL": url,
        "URI": "test:///default",  # libvirt's test driver
        "NAME": "testhost",
        "DIR": str(fixture_copy),  # a fixture (monitor replay DIR writes into it)
        "case-123": str(tmp_path / "case-123"),  # a new folder (monitor record --out)
        "vm.xml": str(SCENARIO / "ticks" / "0001" / "host-a" / f"{vm_id}.xml"),
        "FILE": str(SCENARIO / "ticks" / "0002" / "host-a" / f"{vm_id}.xml"),
        "inventory.json": str(SCENARIO / "inventory.json"),
        "monitor.toml": str(config),
    }


def commands(block: Block) -> list[str]:
    lines = []
    for raw in block.text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("monitor "):
            pytest.fail(f"{block.name}: {line!r} is no monitor command: put "
                        "'<!-- not run: REASON -->' on the line before the block")
        lines.append(re.sub(r"\s*\[[^\]]*\]", "", line))  # optional parts left out
    return lines


def uses_libvirt(argv: list[str]) -> bool:
    """``monitor bench --source libvirt-test`` runs libvirt's test driver."""
    return "libvirt-test" in argv


def argv_of(line: str, table: dict[str, str], url: str, fresh_url) -> list[str]:
    words = [table.get(word, word) for word in shlex.split(line)[1:]]
    verb = words[0]
    for number, word in enumerate(words[:-1]):
        if word in SMALL:
            words[number + 1] = SMALL[word]
        if word == "--db":
            words[number + 1] = fresh_url() if verb == "bench" else url
    for option in ADDED.get(verb, ()):
        if option not in words:
            words += [option, SMALL[option]]
    if verb == "bench" and "--db" not in words and not uses_libvirt(words):
        words += ["--db", fresh_url()]  # (the libvirt-test benchmark uses no database)
    return words


@pytest.mark.parametrize("block", params("sh"))
def test_command_blocks_run(block, tmp_path, monkeypatch, capsys, request):
    url = f"sqlite:///{tmp_path / 'docs.db'}"
    fresh = iter(range(1000))
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MONITOR_DB_URL", url)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    table = placeholders(tmp_path, url)
    for line in commands(block):
        argv = argv_of(line, table, url, lambda: f"sqlite:///{tmp_path / f'e{next(fresh)}.db'}")
        if argv[0] in NEEDS_LIBVIRT or uses_libvirt(argv):
            request.getfixturevalue("libvirt_module")
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, (f"{block.name}: {line}\n  ran as: monitor {shlex.join(argv)}\n"
                           f"{captured.out[-2000:]}{captured.err[-2000:]}")


@pytest.mark.parametrize("block", params("toml"))
def test_config_blocks_load(block, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = tmp_path / "example.toml"
    config.write_text(block.text)
    settings = load_settings(db=f"sqlite:///{tmp_path / 'docs.db'}", config=str(config))
    for host in settings.hosts:
        if host.fixture:
            build_source(host).close()  # its name must be one of the fixture's hosts


def test_blocks_not_run_say_why(capsys):
    skipped = [block for block in blocks("sh", "toml") if block.not_run is not None]
    assert all(block.not_run for block in skipped), "a 'not run:' marker without a reason"
    with capsys.disabled():
        print(f"\n{len(skipped)} docs blocks not run:")
        for block in skipped:
            print(f"  {block.name}: {block.not_run}")


def test_the_blocks_are_found():
    """The parser of this file sees the README's examples (a guard against a regex typo)."""
    readme = [b for b in blocks("sh", "toml") if b.path.name == "README.md"]
    assert any("monitor replay" in b.text for b in readme)
    assert any(b.language == "toml" for b in blocks("toml"))
