"""The one DVC metrics file: a dozen numbers at most, each key meaning the same number in every run."""

from stages.lib.reporting.headline import MAX_KEYS, headline_metrics, twin_of_reference
from tests.reporting.toy_experiments import params


def _figures(mae: float, *, bands: bool = False, worst: bool = True) -> dict:
    figures = {"n": 100, "gender_accuracy": 0.9}
    figures.update({"age_band_accuracy": 0.4} if bands else {"mae": mae, "mae_gap_race_x_gender": mae / 2})
    if worst and not bands:
        figures.update({"worst_group_mae": mae * 2, "worst_group_accuracy": 0.6,
                        "worst_group_mae_vs_retrained": mae - 8})
    return figures


SETS = ["utkface_wild", "wiki", "imdb", "fairface"]


def _metrics(**maes: float) -> dict:
    return {name: {test_set: _figures(mae, bands=test_set == "fairface") for test_set in SETS}
            for name, mae in maes.items()}


def _leaves(headline: dict) -> dict:
    return {f"{key}.{inner}" if isinstance(value, dict) else key: inner_value
            for key, value in headline.items()
            for inner, inner_value in (value.items() if isinstance(value, dict) else [(None, value)])}


def test_the_headline_stays_within_a_dozen_keys_with_the_main_set_first():
    metrics = _metrics(published=10, retrained=8, balanced=7.5, group_dro=8.5, naive_split=7)
    headline = headline_metrics(metrics, test_sets=SETS, fixes=["balanced", "group_dro"])
    leaves = _leaves(headline)
    assert len(leaves) <= MAX_KEYS
    assert leaves["utkface_wild.pub_mae"] == 10 and leaves["utkface_wild.ret_acc"] == 0.9
    assert leaves["worst_mae"] == 16 and leaves["gap_mae"] == 4 and leaves["worst_acc"] == 0.6
    assert leaves["best_fix"] == -0.5                # balanced's, not naive_split's: no fix
    assert list(headline)[0] == "utkface_wild" and "fairface" not in headline


def test_band_only_sets_give_band_accuracy_not_mae():
    headline = headline_metrics(_metrics(published=10, retrained=8), test_sets=["fairface"], fixes=[])
    assert headline == {"fairface": {"pub_band": 0.4, "pub_acc": 0.9, "ret_band": 0.4, "ret_acc": 0.9}}


def test_absent_experiments_leave_their_keys_out():
    headline = headline_metrics(_metrics(published=10), test_sets=SETS, fixes=["balanced"])
    assert headline["utkface_wild"] == {"pub_mae": 10, "pub_acc": 0.9}
    assert not {"worst_mae", "gap_mae", "best_fix"} & set(headline)
    assert headline_metrics({}, test_sets=[], fixes=[]) == {}


def test_best_fix_weighs_only_fixes_whose_change_against_retrained_is_their_own():
    real, demo = params("real-offline"), params("demo")
    assert twin_of_reference(real, real.experiments["oversample_x2"])
    assert not twin_of_reference(real, real.experiments["group_dro"])   # another start than retrained's
    assert twin_of_reference(demo, demo.experiments["group_dro"])
