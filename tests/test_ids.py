"""The comparison forms of monitor/model/ids.py (docs/matching.md, "Normalization")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.model.ids import MAX_NUMBER_CHARS, normalize_number


def reference_number(text):
    """normalize_number as documented, without its fast paths."""
    if text is None or type(text) is int:
        return text
    if not isinstance(text, str):
        return repr(text)
    stripped = text.strip()
    if len(stripped) > MAX_NUMBER_CHARS:
        return text
    try:
        if stripped[:2].lower() == "0x":
            return int(stripped, 16)
        return int(stripped, 10)
    except ValueError:
        return text


NUMBERISH = st.one_of(
    st.text(alphabet="0123456789abcdefxX _-+ \t٣²", max_size=44),
    st.from_regex(r"\A\s?(0x|0X)?[0-9a-fA-F_]{0,42}\s?\Z"),
    st.integers().map(str),
    st.integers(min_value=0).map(hex),
    st.text(max_size=8),
)


@given(NUMBERISH)
def test_fast_paths_agree_with_the_documented_rule(text):
    assert normalize_number(text) == reference_number(text)


def test_what_stays_text_and_what_becomes_a_number():
    assert normalize_number("0x1f") == normalize_number("31") == 31
    assert normalize_number(" 0X1F ") == 31
    assert normalize_number("0x") == "0x"
    assert normalize_number("1" * (MAX_NUMBER_CHARS + 1)) == "1" * (MAX_NUMBER_CHARS + 1)
    assert normalize_number(True) == "True" and normalize_number(None) is None
