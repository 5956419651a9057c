"""VGG-Face's feature shape without TensorFlow (backbones/vgg_shape.py)."""

import pytest

from stages.lib.backbones.vgg_shape import CUTS, cut_shape


def test_pool5_is_five_halvings_deep_with_the_last_conv_width():
    assert cut_shape(224, (64, 128, 256, 512, 512)) == (7, 7, 512)
    assert cut_shape(96, (8, 16, 24, 32, 40)) == (3, 3, 40)
    assert cut_shape(100, [4, 4, 4, 4, 6]) == (3, 3, 6)             # pooling floors: 100 // 32


def test_an_unknown_cut_names_the_allowed_ones():
    with pytest.raises(ValueError, match=f"cut 'fc7' is not supported; allowed: {', '.join(CUTS)}"):
        cut_shape(224, (64, 128, 256, 512, 512), "fc7")
