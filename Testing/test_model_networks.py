"""The network builders: shapes in and out, no pretrained download, unknown names refused."""

from __future__ import annotations

import pytest
import torch

from PancreasSegLib.model.configs import (
    default_config,
    tiny_config,  # noqa: E402
)
from PancreasSegLib.model.networks import build_localizer, build_segmenter  # noqa: E402


def test_default_segmenter_maps_a_patch_to_background_and_pancreas_logits():
    net = build_segmenter(default_config())
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 16, 32, 32))
    assert out.shape == (1, 2, 16, 32, 32)


def test_default_localizer_takes_grey_slices_and_returns_boxes_and_masks():
    cfg = default_config()
    net = build_localizer(cfg)
    h, w = cfg["stages"]["localizer"]["slice_size_yx"]
    with torch.inference_mode():
        out = net([torch.rand(1, h, w), torch.rand(1, h, w)])
    assert len(out) == 2
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}
    assert len(out[0]["boxes"]) <= cfg["stages"]["localizer"]["params"]["box_detections_per_img"]


def test_localizer_does_not_rescale_slices_to_800_pixels():
    net = build_localizer(tiny_config())
    assert net.transform.min_size == (64,)
    assert net.transform.max_size == 64


def test_default_weights_fit_the_size_budget_of_a_bundled_model():
    cfg = default_config()
    params = sum(p.numel() for p in build_localizer(cfg).parameters())
    params += sum(p.numel() for p in build_segmenter(cfg).parameters())
    assert params * 2 <= 25e6  # fp16 storage


def test_same_seed_builds_the_same_weights():
    torch.manual_seed(3)
    a = build_segmenter(tiny_config()).state_dict()
    torch.manual_seed(3)
    b = build_segmenter(tiny_config()).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage, builder", [("localizer", build_localizer), ("segmenter", build_segmenter)])
def test_unknown_architecture_is_refused(stage, builder):
    cfg = tiny_config()
    cfg["stages"][stage]["arch"] = "my.SecretNet"
    with pytest.raises(KeyError, match="unknown"):
        builder(cfg)
