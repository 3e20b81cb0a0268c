"""Hostile and broken XML: refused at once with one clear line, never read further.

Each case runs under a 5 s hang guard (an alarm), so a parser that started expanding
entities or fetching a DTD fails the test instead of hanging it. No timing asserts.
"""

from __future__ import annotations

import signal

import pytest

from monitor.cli import main
from monitor.domxml.canonical import devices_digest
from monitor.domxml.parser import parse_domain
from monitor.errors import XmlError
from monitor.settings import Limits

SECRET = "s3cr3t-do-not-leak"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE domain [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain><name>&lol9;</name><devices><disk/></devices></domain>
"""


@pytest.fixture(autouse=True)
def hang_guard():
    """Fail (not hang) if one case takes more than 5 s."""

    def expired(signum, frame):
        raise TimeoutError("hostile input took more than 5 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def hostile_documents(secret_path) -> list:
    url = secret_path.as_uri()
    return [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(
            f'<!DOCTYPE domain [<!ENTITY xxe SYSTEM "{url}">]>'
            "<domain><name>&xxe;</name><devices><disk/></devices></domain>",
            id="external-entity-local-file"),
        pytest.param(
            f'<!DOCTYPE domain SYSTEM "{url}"><domain><devices/></domain>',
            id="external-dtd-file"),
        pytest.param(
            '<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/evil.dtd"><domain><devices/></domain>',
            id="external-dtd-http"),
        pytest.param(
            f'<!DOCTYPE domain [<!ENTITY % p SYSTEM "{url}"> %p;]>'
            "<domain><devices/></domain>",
            id="parameter-entity"),
        pytest.param(
            '<!DOCTYPE domain [<!ENTITY % p "<!ENTITY x \'y\'>"> %p;]>'
            "<domain><name>&x;</name></domain>",
            id="internal-parameter-entity"),
        pytest.param('<!DOCTYPE domain><domain><devices/></domain>', id="bare-doctype"),
    ]


def _cases():
    # The secret path only exists per test; parametrize over case names instead.
    from pathlib import Path

    return [p.id for p in hostile_documents(Path("/nonexistent"))]


def _document(case_id: str, secret_path) -> bytes:
    for param in hostile_documents(secret_path):
        if param.id == case_id:
            return param.values[0].encode()
    raise AssertionError(case_id)


@pytest.mark.parametrize("case", _cases())
def test_hostile_documents_are_refused_in_one_line(case, secret_file):
    data = _document(case, secret_file)
    with pytest.raises(XmlError) as refused:
        parse_domain(data)
    message = str(refused.value)
    assert "DOCTYPE" in message
    assert "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize("case", _cases())
def test_devices_digest_refuses_them_too(case, secret_file):
    with pytest.raises(XmlError, match="DOCTYPE"):
        devices_digest(_document(case, secret_file))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_doctype_hidden_by_a_wide_encoding_is_refused_too(encoding, secret_file):
    """The byte scan cannot see "<!DOCTYPE" in UTF-16; the parsed tree's DTD gives it away."""
    text = BILLION_LAUGHS.replace('<?xml version="1.0"?>',
                                  f'<?xml version="1.0" encoding="{encoding.upper()}"?>')
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_domain(text.encode(encoding))
    xxe = (f'<?xml version="1.0" encoding="{encoding.upper()}"?><!DOCTYPE domain '
           f'[<!ENTITY xxe SYSTEM "{secret_file.as_uri()}">]><domain><name>&xxe;</name></domain>')
    with pytest.raises(XmlError) as refused:
        parse_domain(xxe.encode(encoding))
    assert SECRET not in str(refused.value)


def test_wide_encoding_without_doctype_still_parses():
    text = ('<?xml version="1.0" encoding="UTF-16"?>'
            "<domain><name>w</name><devices><disk/></devices></domain>")
    parsed = parse_domain(text.encode("utf-16"))
    assert (parsed.name, [d.tag for d in parsed.devices]) == ("w", ["disk"])


MALFORMED = [
    pytest.param(b"<domain>\n  <devices>\n    <disk>\n  </devices>\n</domain>", 4,
                 id="mismatched-tag"),
    pytest.param(b"<domain>\n<devices/>\n</domain>\n<domain/>", 4, id="two-roots"),
    pytest.param(b"", 1, id="empty"),
    pytest.param(b"<domain><name>a & b</name></domain>", 1, id="bare-ampersand"),
    pytest.param(b"<domain><name>&undefined;</name></domain>", 1, id="undefined-entity"),
    pytest.param(b"\n\n<domain attr='1' attr='2'/>", 3, id="duplicate-attribute"),
    pytest.param(b"<domain>" + b"<a>" * 300 + b"</a>" * 300 + b"</domain>", 1,
                 id="deeper-than-libxml2-allows"),
]


@pytest.mark.parametrize(("data", "line"), MALFORMED)
def test_malformed_xml_names_the_line(data, line):
    with pytest.raises(XmlError) as refused:
        parse_domain(data)
    message = str(refused.value)
    assert message.startswith(f"malformed XML at line {line}: ")
    assert "\n" not in message


# --- the CLI on bad input: one line on stderr, non-zero exit, no traceback ---------


def cli_case(tmp_path, name: str, content: bytes | None):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    return str(path)


CLI_CASES = [
    pytest.param("laughs.xml", BILLION_LAUGHS.encode(), "DOCTYPE", id="billion-laughs"),
    pytest.param("broken.xml", b"<domain>\n<devices>\n</domain>", "malformed XML at line 3",
                 id="malformed"),
    pytest.param("net.xml", b"<network><name>default</name></network>", "<network>",
                 id="refused-root"),
    pytest.param("missing.xml", None, "no such file", id="missing-file"),
]


@pytest.mark.parametrize(("name", "content", "expected"), CLI_CASES)
def test_cli_devices_reports_one_line(tmp_path, capsys, name, content, expected):
    path = cli_case(tmp_path, name, content)
    code = main(["devices", path])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_devices_on_a_directory(tmp_path, capsys):
    code = main(["devices", str(tmp_path)])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.err.count("\n") == 1
    assert "directory" in captured.err


@pytest.mark.parametrize("elements", [1, 2, 7, 100])
def test_the_densest_document_over_the_element_limit_is_refused(elements):
    """The count is skipped only for documents too short to exceed the limit; the densest
    markup (``<a/>`` per element) one element over it is still counted and refused."""
    data = ("<domain>" + "<a/>" * elements + "</domain>").encode()
    limits = Limits(max_elements=elements)  # one element fewer than the document holds
    with pytest.raises(XmlError, match=f"{elements + 1} elements, over the limit of {elements}"):
        parse_domain(data, limits=limits)
    assert parse_domain(data, limits=Limits(max_elements=elements + 1)).devices == ()
