"""The two networks of the cascade, built from plain configuration dicts (the stages of model.json).

Phase 1, the **localizer**, is torchvision's Mask R-CNN on single axial slices (one grey channel,
windowed to [0, 1]). Its backbone is a ResNet-18 cut after ``layer3`` with a small FPN: 5.1 M
parameters (10 MB in fp16), about 1-2 s for the 36 slices of a 30 cm scan on two CPU cores. It is
trained from scratch (no pretrained download, ever), so it uses real batch norm rather than
torchvision's frozen one. Heads and proposal counts are cut down: the pancreas is one object per
slice, so 100/20 proposals and 5 detections per slice are plenty.

Phase 2, the **segmenter**, is MONAI's ``DynUNet``: the configurable U-Net of nnU-Net (which the seed
paper uses as its strongest comparator). Why this one rather than MONAI's ``UNet``, ``BasicUNet`` or
``SegResNet``:

- it keeps two 3x3x3 convolutions at full resolution; MONAI's ``UNet`` downsamples in its very first
  layer, which makes it 4x faster but coarse at the boundary of a thin organ such as the pancreas;
- kernel sizes and strides are per level, so an anisotropic spacing can be configured later without
  code changes, and deep supervision is available to training;
- instance norm and leaky ReLU train well from scratch with the small batches a CPU allows.

Filters (8, 32, 64, 128, 256): 5.6 M parameters (11 MB in fp16). The full-resolution level only
refines the boundary from the level below and is the most expensive per channel, so it gets 8
channels (16 cost 1.5x the time and 1.4x the memory). See docs/model.md.

Both builders take either the whole model configuration (``{"stages": {...}}``) or one stage's dict
(``{"arch": ..., "params": {...}}``). Architectures are looked up by name in :data:`LOCALIZER_ARCHS`
and :data:`SEGMENTER_ARCHS`; an unknown name raises ``KeyError`` (the bundle turns it into an
``InputError`` naming the bundle).

>>> cfg = default_config()
>>> segmenter = build_segmenter(cfg)  # doctest: +SKIP
>>> localizer = build_localizer(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from PancreasSegLib.labels import PANCREAS

if TYPE_CHECKING:
    import torch

#: Localizer architectures by name.
LOCALIZER_ARCHS = ("torchvision.MaskRCNN",)
#: Segmenter architectures by name.
SEGMENTER_ARCHS = ("monai.DynUNet", "monai.UNet", "monai.BasicUNet")

_RESNET_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}


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


def _stage(cfg: dict, name: str) -> dict:
    return cfg["stages"][name] if "stages" in cfg else cfg


def segmenter_output_channels(cfg: dict) -> int:
    """The number of output channels (background + one per label) the segmenter stage declares."""
    stage = _stage(cfg, "segmenter")
    params = stage.get("params", {})
    return int(params.get("out_channels", 2))


def build_localizer(cfg: dict) -> torch.nn.Module:
    """Build the Mask R-CNN localizer (randomly initialised, in eval mode) from its configuration.

    Args:
        cfg: the model configuration or its ``"localizer"`` stage. The network takes a list of
            (1, H, W) float tensors in [0, 1] (windowed CT slices, H x W = ``slice_size_yx``).

    Returns:
        A ``torchvision.models.detection.MaskRCNN``.

    Raises:
        KeyError: unknown architecture or backbone.
    """
    import torch.nn as nn
    from torchvision.models import resnet18, resnet34
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    stage = _stage(cfg, "localizer")
    if stage.get("arch") not in LOCALIZER_ARCHS:
        raise KeyError(f"unknown localizer architecture {stage.get('arch')!r} (known: {', '.join(LOCALIZER_ARCHS)})")
    p = stage["params"]
    resnets = {"resnet18": resnet18, "resnet34": resnet34}
    if p.get("backbone") not in resnets:
        raise KeyError(f"unknown localizer backbone {p.get('backbone')!r} (known: {', '.join(resnets)})")
    # Trained from scratch: real batch norm (torchvision's default frozen BN only suits pretrained weights).
    body = resnets[p["backbone"]](weights=None, norm_layer=nn.BatchNorm2d)
    body.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # one grey channel
    layers = list(p["returned_layers"])
    fpn = int(p["fpn_channels"])
    backbone = BackboneWithFPN(body, {name: str(i) for i, name in enumerate(layers)},
                               [_RESNET_CHANNELS[name] for name in layers], fpn, extra_blocks=LastLevelMaxPool())
    names = [str(i) for i in range(len(layers))]
    sizes = tuple(tuple(int(s) for s in level) for level in p["anchor_sizes"])
    if len(sizes) != len(layers) + 1:  # one entry per FPN level, the extra max-pool level included
        raise KeyError(f"anchor_sizes needs {len(layers) + 1} levels for returned_layers {layers}")
    anchors = AnchorGenerator(sizes, (tuple(float(r) for r in p["aspect_ratios"]),) * len(sizes))
    height, width = (int(s) for s in stage["slice_size_yx"])
    rep, mask_ch, num_classes = int(p["box_head_size"]), int(p["mask_head_channels"]), int(stage["num_classes"])
    model = MaskRCNN(
        backbone,
        num_classes=None,
        # The slices arrive at their final size: stop torchvision from rescaling them to 800 pixels.
        min_size=min(height, width),
        max_size=max(height, width),
        image_mean=[0.5],
        image_std=[0.25],
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        box_head=TwoMLPHead(fpn * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, num_classes),
        mask_head=MaskRCNNHeads(fpn, (mask_ch,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_ch, mask_ch, num_classes),
        rpn_pre_nms_top_n_train=int(p["rpn_pre_nms_top_n_train"]),
        rpn_post_nms_top_n_train=int(p["rpn_post_nms_top_n_train"]),
        rpn_pre_nms_top_n_test=int(p["rpn_pre_nms_top_n_test"]),
        rpn_post_nms_top_n_test=int(p["rpn_post_nms_top_n_test"]),
        box_detections_per_img=int(p["box_detections_per_img"]),
        box_score_thresh=float(p["box_score_thresh"]),
    )
    return model.eval()


def build_segmenter(cfg: dict) -> torch.nn.Module:
    """Build the 3D segmenter (randomly initialised, in eval mode) from its configuration.

    Args:
        cfg: the model configuration or its ``"segmenter"`` stage. The network maps a
            (B, 1, Z, Y, X) normalised CT patch to (B, C, Z, Y, X) logits, C = background + labels;
            Z, Y, X must be multiples of the stage's ``size_divisor``.

    Returns:
        A MONAI network (``DynUNet`` by default; in eval mode it returns only the full-resolution
        output even when built with deep supervision).

    Raises:
        KeyError: unknown architecture.
    """
    from monai.networks import nets

    stage = _stage(cfg, "segmenter")
    arch = stage.get("arch")
    if arch not in SEGMENTER_ARCHS:
        raise KeyError(f"unknown segmenter architecture {arch!r} (known: {', '.join(SEGMENTER_ARCHS)})")
    params = dict(stage["params"])
    cls = getattr(nets, arch.split(".", 1)[1])
    return cls(spatial_dims=3, **params).eval()
