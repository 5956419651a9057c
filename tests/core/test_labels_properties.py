"""The label normalisers (labels.py) by property: every spelling of a code, and nothing else, accepted."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.lib.datasets.common import Rejected
from stages.lib.datasets.utkface import parse_utkface_name
from stages.lib.core.labels import GENDERS, RACES, LabelError, normalise_age, normalise_gender, normalise_race


def code_spellings(code: int):
    return [code, str(code), float(code), f"{code}.0", np.int64(code)]


@given(st.integers(0, 1))
def test_gender_codes_in_any_spelling(code):
    assert {normalise_gender(v) for v in code_spellings(code)} == {GENDERS[code]}
    assert normalise_gender(GENDERS[code].upper()) == GENDERS[code]


@given(st.integers(0, 4))
def test_race_codes_in_any_spelling(code):
    assert {normalise_race(v) for v in code_spellings(code)} == {RACES[code]}
    assert normalise_race(f" {RACES[code].title()} ") == RACES[code]


@given(st.integers().filter(lambda c: c not in (0, 1)))
def test_other_gender_codes_are_refused(code):
    with pytest.raises(LabelError):
        normalise_gender(code)


@given(st.integers().filter(lambda c: not 0 <= c <= 4))
def test_other_race_codes_are_refused(code):
    with pytest.raises(LabelError):
        normalise_race(str(code))


@given(st.one_of(st.text(max_size=20), st.floats(allow_nan=True, allow_infinity=False), st.none(), st.integers()))
def test_label_normalisers_accept_or_raise_label_error(value):
    for normalise, vocabulary in [(normalise_gender, GENDERS), (normalise_race, RACES)]:
        try:
            assert normalise(value) in vocabulary
        except LabelError:
            pass
    try:
        age = normalise_age(value)
    except LabelError:
        pass
    else:
        assert isinstance(age, int) and age >= 0 and age == float(value)


@pytest.mark.parametrize("call", [
    lambda: normalise_gender(float("inf")), lambda: normalise_race("-inf"),
    lambda: parse_utkface_name("26_inf_0_20170116174525125.jpg"),  # a file name must never crash prepare
])
def test_infinite_codes_are_refused(call):
    with pytest.raises((LabelError, Rejected)):
        call()


@given(st.integers(0, 150))
def test_ages_in_any_spelling(age):
    assert {normalise_age(v) for v in [age, str(age), float(age), f"{age}.0"]} == {age}


@given(st.floats(0, 150).filter(lambda f: f != int(f)))
def test_fractional_ages_are_refused(value):
    with pytest.raises(LabelError):
        normalise_age(value)
