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

>>> from PancreasSegLib.model.configs import default_config
>>> cfg = default_config()
>>> segmenter = build_segmenter(cfg)  # doctest: +SKIP
>>> localizer = build_localizer(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Localizer architectures by name.
LOCALIZER_ARCHS = ("torchvision.MaskRCNN",)
#: Segmenter architectures by name.
SEGMENTER_ARCHS = ("monai.DynUNet", "monai.UNet", "monai.BasicUNet")

_RESNET_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}


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
