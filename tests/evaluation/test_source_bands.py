import numpy as np

from stages.lib.evaluation.source_bands import ages_are_bands, exact_age_rows, in_source_band
from tests.evaluation.frames import TOY


def test_a_predicted_age_is_judged_by_the_labelled_band_it_lands_in():
    hits = in_source_band([29.9, 30.0, 71.2, 5.0, 40.0], ["20-29", "20-29", "more than 70", None, "bad"])
    np.testing.assert_array_equal(hits[:3], [1.0, 0.0, 1.0])
    assert np.isnan(hits[3:]).all()  # no band: exact-age rows are not judged this way


def test_a_set_is_banded_only_where_every_face_carries_a_band():
    assert ages_are_bands({"n": 4, "n_age_band": 4}) and not ages_are_bands({"n": 4, "n_age_band": 3})
    assert not ages_are_bands({"n": 0, "n_age_band": 0})
    banded = TOY.assign(age_band_source=["20-29", None, None, "more than 70", None])
    assert list(exact_age_rows(banded).index) == [1, 2, 4] and len(exact_age_rows(TOY)) == len(TOY)
