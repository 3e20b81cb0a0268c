"""The JSON columns' text (``monitor.store.jsontext``): ``dumps`` writes what
``json.dumps`` with compact separators writes, and ``loads`` reads it back, for any
JSON value (docs/performance.md, "The ninth wave": both skip per-call set-up)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.store import jsontext

SCALARS = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(), inner, max_size=5), max_leaves=25)


@given(VALUES)
def test_dumps_writes_what_json_dumps_writes_and_loads_reads_it_back(value):
    text = jsontext.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert jsontext.loads(text) == value
    assert jsontext.loads(text.encode()) == value


def test_what_json_cannot_encode_is_refused_as_json_refuses_it():
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        jsontext.dumps({"a": [{1, 2}]})
    assert jsontext.dumps({"n": float("nan")}) == '{"n":NaN}'


def test_loads_takes_what_a_person_may_have_stored():
    assert jsontext.loads(" { \"a\" : 1 } ") == {"a": 1}  # whitespace: json.loads' path
    assert jsontext.loads("{}") == {} and jsontext.loads("{}") is not jsontext.loads("{}")
    assert jsontext.loads(7) == 7 and jsontext.loads(2.5) == 2.5  # SQLite's numbers
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads('{"a": 1} x')
