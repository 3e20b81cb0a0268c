"""Shared test fixtures: the corpus, and databases on SQLite and PostgreSQL.

Where ``../shared/corpus``, the PostgreSQL server, libvirt or a libvirt daemon with
QEMU is missing, the tests that need them skip with a reason; ``.ci/run`` sets
MONITOR_REQUIRE_CORPUS=1, MONITOR_REQUIRE_POSTGRES=1, MONITOR_REQUIRE_LIBVIRT=1,
MONITOR_REQUIRE_INDEX=1 (the package index, for scripts/run on a fresh clone) and
MONITOR_REQUIRE_QEMU=1, which turn those skips into failures.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MONITOR_CORPUS", REPO.parent / "shared" / "corpus"))
FIXTURES = REPO / "fixtures"
PG_ADMIN_URL = os.environ.get(
    "MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _required(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0", "false")


def missing(reason: str, variable: str) -> None:
    """Skip for a user's fresh clone; fail where CI requires the part."""
    if _required(variable):
        pytest.fail(f"{reason} ({variable} is set, so this may not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "libvirt").is_dir():
        missing(f"needs the shared corpus at {CORPUS}", "MONITOR_REQUIRE_CORPUS")
    return CORPUS


@pytest.fixture(scope="session")
def pg_database():
    """One PostgreSQL database for the whole run, dropped at the end."""
    try:
        import sqlalchemy as sa
    except ImportError:  # pragma: no cover
        missing("needs SQLAlchemy", "MONITOR_REQUIRE_POSTGRES")
    name = f"monitor_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # the server is absent: skip, or fail in CI
        admin.dispose()
        missing(f"needs PostgreSQL at {PG_ADMIN_URL}: {error.__class__.__name__}",
                "MONITOR_REQUIRE_POSTGRES")
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database URL per test: an SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    import sqlalchemy as sa

    base = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def libvirt_event_loop():
    """libvirt's event loop, registered once before any test opens a connection (a
    connection opened before it never delivers events); nothing where libvirt-python
    is absent (the tests that need it skip through ``libvirt_module``)."""
    try:
        from monitor.hosts.libvirt_events import start_event_loop
    except ImportError:
        return False
    start_event_loop()
    return True


@pytest.fixture(scope="session")
def libvirt_module(libvirt_event_loop):
    """libvirt-python with a working test driver and its event loop, or a skip (a
    failure in CI)."""
    try:
        import libvirt
    except ImportError:
        missing("needs libvirt-python", "MONITOR_REQUIRE_LIBVIRT")
    try:
        libvirt.open("test:///default").close()
    except libvirt.libvirtError as error:
        missing(f"libvirt's test driver does not open: {error}", "MONITOR_REQUIRE_LIBVIRT")
    return libvirt


@pytest.fixture(scope="session")
def qemu_host(libvirt_module):
    """A libvirt daemon with QEMU, a guest to boot, device events (tests/qemu_host.py);
    or a skip (a failure in CI). Whatever the run made is removed at the end."""
    from qemu_host import QemuUnavailable, start_qemu_host

    try:
        host = start_qemu_host(libvirt_module)
    except QemuUnavailable as error:
        missing(f"needs a libvirt daemon with QEMU: {error}", "MONITOR_REQUIRE_QEMU")
    yield host
    problems = host.close()
    assert not problems, f"the real-QEMU host left things behind: {problems}"


@pytest.fixture(scope="session")
def domain_rng(corpus):
    """libvirt's RelaxNG schema for a domain, loaded once."""
    from lxml import etree

    return etree.RelaxNG(file=str(corpus / "libvirt" / "schemas" / "domain.rng"))
