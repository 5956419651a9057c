"""The mitigations' groups: per-group means of a batch, the worst group's loss, group and attribute codes."""

import numpy as np
import pandas as pd
import tensorflow as tf

from stages.lib.heads.groups import attribute_codes, group_means, joint_group_codes, worst_group_loss


def test_group_means_and_worst_group_loss_by_hand():
    means = group_means(tf.constant([1.0, 3.0, 5.0]), tf.constant([0, 0, 2]), 3).numpy()
    np.testing.assert_allclose(means, [2.0, 0.0, 5.0])
    assert worst_group_loss(np.array([1.0, 3.0, 0.5]), np.array([0, 0, 1])) == 2.0


def test_attribute_codes_number_the_classes_and_mark_unknown_rows():
    codes, classes = attribute_codes(pd.DataFrame({"race": ["white", None, "black", "white"]}), "race")
    assert classes == 2 and codes.tolist() == [1, -1, 0, 1]
    assert codes.dtype == np.int64


def test_joint_group_codes_name_the_groups_of_train_and_val_on_one_list():
    train = pd.DataFrame({"race": ["black", "white"], "gender": ["female", "female"], "age": [20, 30]})
    val = pd.DataFrame({"race": ["white", "asian"], "gender": ["female", "male"], "age": [40, 50]})
    train_codes, val_codes, names = joint_group_codes(train, val, ["race", "gender"], [0, 16])
    assert [names[c] for c in train_codes] == ["black*female", "white*female"]
    assert [names[c] for c in val_codes] == ["white*female", "asian*male"]   # a val-only group is named too
    assert train_codes[1] == val_codes[0]
