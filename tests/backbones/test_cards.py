"""The published models' shared types (backbones/cards.py) and their one table (published.py)."""

import numpy as np
import pytest

from stages.lib.backbones import cards, published

CARD = cards.ModelCard(name="m", family="f", source="s", trained_on="t", in_sample={}, age_bands=None, weights=())


def test_the_default_rule_is_the_more_probable_class_female_on_a_tie():
    assert CARD.decision_rule == cards.ARGMAX_RULE
    assert CARD.genders(np.array([0.5, 0.4999, 0.9, np.nan])).tolist() == ["female", "male", "female", None]


def test_a_threshold_rule_calls_male_where_p_male_reaches_it():
    card = cards.ModelCard(**{**CARD.__dict__, "male_at": 0.6})
    assert card.decision_rule == "male where P(male) >= 0.6"
    assert card.genders(1.0 - np.array([0.6, 0.5999, 0.55])).tolist() == ["male", "female", "female"]


def test_every_family_is_one_row_of_the_table_under_its_card_name():
    assert published.names() == ["dlib_cydral", "face_api", "faceres", "gear", "levi_hassner", "wide_resnet_imdb"]
    assert all(published.card(name).name == name for name in published.names())
    with pytest.raises(KeyError, match="registered: dlib_cydral, face_api"):
        published.card("nope")


def test_a_missing_weights_file_names_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m stages.download --only faceres_graph"):
        cards.weight_files(tmp_path, {"faceres_graph": "faceres_graph.json"})
    assert cards.whole_image_boxes([np.zeros((30, 40, 3))]).tolist() == [[0, 0, 40, 30]]
