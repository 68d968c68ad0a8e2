"""An event written with one field's JSON given (a start's input, encoded once by the
client to check its size) is the same text as the event encoded whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from perdure.core.history import _SPLICED, ExecutionStarted, dumps_event, dumps_event_with
from perdure.core.payload import compact_json

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
# Tuples and integer keys too: JSON writes them as lists and strings, the same either way.
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(value=values, name=st.text(), trace=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_an_event_with_its_input_encoded_already_is_the_same_json(value, name, trace):
    event = ExecutionStarted(timestamp=1.5, name=name, input=value, run_id="r1", trace=trace)
    assert dumps_event_with(event, "input", compact_json(value)) == dumps_event(event)


def test_a_field_that_holds_the_marker_text_has_the_event_encoded_whole():
    """The input's place is found by a marker that no JSON of other values contains unless
    a string holds the marker itself: then the whole event is encoded (without that check
    the name would get the input; checked)."""
    event = ExecutionStarted(timestamp=1.5, name=_SPLICED, input=[1, 2])
    assert dumps_event_with(event, "input", "[1,2]") == dumps_event(event)
