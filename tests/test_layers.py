"""The module layers of STYLE point 2, enforced: one owner per outside library, a pure core."""

import logging
from pathlib import Path

from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(REPO)
    loggers = [logging.getLogger(name) for name in logging.root.manager.loggerDict]
    enabled = [logger for logger in loggers if not logger.disabled]
    try:
        assert lint_imports(config_filename=str(REPO / ".importlinter")) == 0
    finally:  # import-linter configures logging and disables the loggers it finds
        for logger in enabled:
            logger.disabled = False
