"""``-v`` counts before the verb and after it (README.md, "Using it")."""

from __future__ import annotations

import logging

import pytest
from conftest import FIXTURES

from monitor.cli import main


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize(("where", "level"), [
    pytest.param([], logging.WARNING, id="none"),
    pytest.param(["-v", "VERB"], logging.INFO, id="before"),
    pytest.param(["VERB", "-v"], logging.INFO, id="after"),
    pytest.param(["VERB", "-vv"], logging.DEBUG, id="after-twice"),
    pytest.param(["-v", "VERB", "-v"], logging.DEBUG, id="both"),
])
def test_verbose_before_or_after_the_verb(root_logging, capsys, where, level):
    verb = ["replay", str(FIXTURES / "disk-hotplug"), "--db", "sqlite://"]
    argv = [part for item in (where or ["VERB"]) for part in (verb if item == "VERB" else [item])]
    assert main(argv) == 0
    assert root_logging.level == level
