"""Model configurations in one place: the default, the tiny one for tests, and the training recipes.

A configuration is what model.json holds: name, labels and the two stages with everything needed to
rebuild them (architecture and parameters, spacing, HU window, patch size, slice step, thresholds,
ROI margin) and the post-processing. The inference settings live in the stages (they go into
model.json as they are); the training-only settings in ``config["training"]["recipe"]``.

``cpu`` is the recipe of the bundled phantom model. It is sized for two shared CPU cores, where a
DynUNet step is memory-bound (its cost follows the voxel count far more than the filter count):
the segmenter works at 2 mm isotropic (a 20 mm-margin ROI around a pancreas is then about
60 x 50 x 95 voxels, one inference window of 64 x 96 x 128) with filters 16-32-64-128 and trains
on 48 x 64 x 64 patches (96 x 128 x 128 mm), two per step; the localizer reads 128 x 128 slices at
3 mm (a 38 cm field of view) with its ResNet-18 FPN and anchors scaled to match. ``tiny`` is for
tests: a few thousand parameters.

>>> config = recipe_config("tiny")
>>> config["stages"]["segmenter"]["spacing_xyz_mm"]
[4.0, 4.0, 4.0]
"""

from __future__ import annotations

import copy
from typing import Any

from PancreasSegLib.labels import PANCREAS


def default_config() -> dict[str, Any]:
    """The default model configuration: what a fresh model.json holds before training fills it in.

    Sizes are chosen so that both stages train on a CPU in well under an hour on phantoms and
    infer fast: localizer slices of 192 x 192 at 2 mm (a 38 cm field of view) every 10 mm,
    segmenter at 1 mm isotropic with a sliding window of up to 128 x 128 x 192 voxels (z, y, x),
    so that a pancreas ROI (organ + 20 mm on each side) is a single window.

    Axis order is spelled out in every key: ``_xyz`` for physical quantities in SimpleITK order,
    ``_zyx`` for array shapes.

    Returns:
        A new dict (callers may modify it).
    """
    return copy.deepcopy(_DEFAULT_CONFIG)


_DEFAULT_CONFIG: dict[str, Any] = {
    "format": "pancreasseg-bundle/1",
    "name": "pancreas-untrained",
    "version": "0.0.0",
    "description": "Untrained two-phase pancreas model (random weights). Not for any use on patients.",
    "labels": [PANCREAS.to_json()],
    "stages": {
        "localizer": {
            "arch": "torchvision.MaskRCNN",
            "params": {
                "backbone": "resnet18",
                "returned_layers": ["layer2", "layer3"],
                "fpn_channels": 128,
                "anchor_sizes": [[16, 24], [32, 48], [64, 128]],
                "aspect_ratios": [0.5, 1.0, 2.0],
                "box_head_size": 256,
                "mask_head_channels": 64,
                "rpn_pre_nms_top_n_train": 1000,
                "rpn_post_nms_top_n_train": 500,
                "rpn_pre_nms_top_n_test": 100,
                "rpn_post_nms_top_n_test": 20,
                "box_detections_per_img": 5,
                "box_score_thresh": 0.05,
            },
            "num_classes": 2,
            "in_plane_spacing_mm": 2.0,
            "slice_size_yx": [192, 192],
            "hu_window": [-160.0, 240.0],
            "slice_step_mm": 10.0,
            "refine_slices": 3,
            "batch_size": 32,
            "score_threshold": 0.5,
            "margin_mm": 20.0,
            "weights": {"file": "localizer.safetensors", "sha256": None},
        },
        "segmenter": {
            "arch": "monai.DynUNet",
            "params": {
                "in_channels": 1,
                "out_channels": 2,
                "filters": [8, 32, 64, 128, 256],
                "kernel_size": [3, 3, 3, 3, 3],
                "strides": [1, 2, 2, 2, 2],
                "upsample_kernel_size": [2, 2, 2, 2],
                "norm_name": "instance",
                "deep_supervision": True,
                "deep_supr_num": 2,
            },
            "spacing_xyz_mm": [1.0, 1.0, 1.0],
            "hu_window": [-160.0, 240.0],
            "normalization": "window",
            "patch_size_zyx": [128, 128, 192],
            "size_divisor": 16,
            "overlap": 0.25,
            "sw_batch_size": 1,
            "threshold": 0.5,
            "weights": {"file": "segmenter.safetensors", "sha256": None},
        },
    },
    "postprocessing": {
        "largest_component": True,
        "fill_holes": True,
        "smoothing_sigma_mm": 1.0,
        "min_component_ml": 0.0,
        "border_guard_mm": 20.0,
    },
    "training": {},
    "metrics": {},
}


def tiny_config() -> dict[str, Any]:
    """A miniature configuration for tests: same architectures, a few thousand parameters, coarse spacing."""
    config = default_config()
    config["name"] = "pancreas-random-tiny"
    loc = config["stages"]["localizer"]
    loc["params"].update(returned_layers=["layer1", "layer2"], fpn_channels=16, box_head_size=32, mask_head_channels=8,
                         anchor_sizes=[[4, 8], [8, 16], [16, 32]])
    loc.update(in_plane_spacing_mm=6.0, slice_size_yx=[64, 64], slice_step_mm=10.0)
    seg = config["stages"]["segmenter"]
    seg["params"].update(filters=[4, 8, 16], kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                         deep_supr_num=1)
    seg.update(spacing_xyz_mm=[4.0, 4.0, 4.0], patch_size_zyx=[16, 32, 32], size_divisor=4)
    config["postprocessing"]["smoothing_sigma_mm"] = 0.0
    return config


RECIPES = ("cpu", "tiny")

_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "localizer": {
        "batch_size": 4,
        "positive_fraction": 0.5,
        "lr": 3e-4,
        "weight_decay": 1e-4,
        "warmup_iterations": 50,
        "iterations_per_epoch": 50,
        "epochs": 8,
        "slice_step_mm": 4.0,
        "max_shift_px": 12,
        "min_mask_pixels": 6,
        # Fewer sampled proposals than torchvision's 512 per slice: RoIAlign's backward pass dominated the
        # step time on CPU, and one object per slice needs few (measured: 4x faster steps).
        "box_batch_size_per_image": 64,
        "rpn_pre_nms_top_n_train": 400,
        "rpn_post_nms_top_n_train": 200,
    },
    "segmenter": {
        "batch_size": 2,
        "patch_size_zyx": [48, 64, 64],
        "pos_neg": [2, 1],
        "lr": 2e-3,
        "weight_decay": 1e-5,
        "warmup_iterations": 20,
        "iterations_per_epoch": 50,
        "epochs": 6,
        "margin_mm": 20.0,
        "margin_jitter_mm": [-10.0, 15.0],
        "rotate_deg": 10.0,
        "scale": 0.1,
        "augment_probability": 0.3,
        "crop": "roi",
    },
}


def recipe_config(name: str = "cpu") -> dict[str, Any]:
    """The model configuration of a recipe, with its training settings in ``training.recipe``.

    Args:
        name: ``"cpu"`` (the bundled model's recipe) or ``"tiny"`` (tests and smoke runs).

    Raises:
        ValueError: unknown recipe.
    """
    if name == "cpu":
        config = default_config()
        seg = config["stages"]["segmenter"]
        seg["params"].update(filters=[16, 32, 64, 128], kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
                             upsample_kernel_size=[2, 2, 2], deep_supr_num=1)
        seg.update(spacing_xyz_mm=[2.0, 2.0, 2.0], patch_size_zyx=[64, 96, 128], size_divisor=8)
        loc = config["stages"]["localizer"]
        loc.update(in_plane_spacing_mm=3.0, slice_size_yx=[128, 128])
        loc["params"].update(anchor_sizes=[[8, 16], [24, 32], [48, 96]])
        train = copy.deepcopy(_TRAIN_DEFAULTS)
    elif name == "tiny":
        config = tiny_config()
        train = copy.deepcopy(_TRAIN_DEFAULTS)
        train["localizer"].update(batch_size=2, iterations_per_epoch=2, epochs=1, warmup_iterations=0,
                                  slice_step_mm=10.0, max_shift_px=4, min_mask_pixels=2)
        train["segmenter"].update(batch_size=1, patch_size_zyx=[16, 32, 32], iterations_per_epoch=2, epochs=1,
                                  warmup_iterations=0)
    else:
        raise ValueError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    config["name"] = f"pancreas-{name}-recipe"
    config["description"] = "Two-phase pancreas model trained by pancreasseg train. Research use only."
    config["training"] = {"recipe": dict(train, name=name)}
    return config


def training_settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """A stage's training settings: the bundle's own (fine-tuning keeps them) over the recipe defaults."""
    recipe = config.get("training", {}).get("recipe", {})
    return {**_TRAIN_DEFAULTS[stage], **recipe.get(stage, {})}
