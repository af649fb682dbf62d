"""Phase 1 training: torchvision Mask R-CNN on the cached axial slices; slice and ROI validation.

A step takes ``batch_size`` slices, ``positive_fraction`` of them with pancreas (one instance: the
gland's mask on that slice and its box) and the rest without (empty targets: the detector learns
what is not a pancreas). Slices whose mask is only a few pixels are used for neither, since a
pancreas tip one pixel wide is a coin toss for any annotator. Augmentation: a random in-plane shift
(filled with air) and intensity scale, shift and noise; no flips, for the same reason as phase 2.
In train mode torchvision's model returns its loss dict; the loss is the sum of its terms.

Validation uses the inference code: :func:`PancreasSegLib.pipeline.phase1.detect` on held-out slices
(detection rate on pancreas slices, false alarms on the others) after every epoch, and at the end
:func:`PancreasSegLib.pipeline.phase1.localize` on the whole validation volumes, scored by the fraction of
the pancreas the 3D ROI holds (what phase 2 needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.phase1 import detect, localize

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch


def box_of(mask: np.ndarray) -> np.ndarray:
    """The box (x0, y0, x1, y1) around a 2D mask's pixels, pixel i spanning [i, i + 1) as in the inference grid."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _shift(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(array)
    h, w = array.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = array[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


class LocalizerTrainer:
    """One training step and the slice-level validation of the localizer, on in-memory cached slices."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_items: list[dict],
                 val_items: list[dict], stage: dict[str, Any], settings: dict[str, Any], seed: int,
                 device: str = "cpu", rank: int = 0, net: torch.nn.Module | None = None) -> None:
        self.model, self.optimizer = model, optimizer
        self.stage, self.settings, self.seed, self.device = stage, settings, seed, device
        # under torchrun: each rank its own batches (rank 0 those of one process), stepping the DDP wrapper
        self.stream, self.net = ([rank] if rank else []), net if net is not None else model
        _training_sampling(model, settings)
        self.train_slices, self.train_masks, self.pos, self.neg = self._pools(train_items)
        val_slices, val_masks, val_pos, val_neg = self._pools(val_items)
        pick = np.random.default_rng([seed, 3])
        val_pos = val_pos if len(val_pos) <= 48 else pick.choice(val_pos, 48, replace=False)
        val_neg = val_neg if len(val_neg) <= 48 else pick.choice(val_neg, 48, replace=False)
        self.val = [(val_slices[i], val_masks[i]) for i in list(val_pos) + list(val_neg)]
        if not len(self.pos):
            raise ValueError("no training slice shows a pancreas")

    def _pools(self, items: list[dict]):
        slices = [s for item in items for s in item["slices"]]
        masks = [m for item in items for m in item["masks"]]
        area = np.array([int(m.sum()) for m in masks])
        minimum = int(self.settings["min_mask_pixels"])
        return slices, masks, np.flatnonzero(area >= minimum), np.flatnonzero(area == 0)

    def batch(self, iteration: int):
        """Images (list of (1, H, W) tensors) and targets of one step; the same iteration gives the same batch."""
        import torch

        rng = np.random.default_rng([self.seed, 1, iteration, *self.stream])
        size = int(self.settings["batch_size"])
        n_pos = int(round(size * float(self.settings["positive_fraction"]))) if len(self.neg) else size
        chosen = list(rng.choice(self.pos, n_pos)) + (list(rng.choice(self.neg, size - n_pos)) if size > n_pos else [])
        shift = int(self.settings["max_shift_px"])
        images, targets = [], []
        for i in chosen:
            dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
            image = _shift(self.train_slices[i].astype(np.float32), dy, dx)
            mask = _shift(self.train_masks[i], dy, dx)
            image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
            if rng.random() < 0.3:
                image = image + rng.normal(0, 0.02, image.shape)
            image = np.clip(image, 0.0, 1.0).astype(np.float32)
            if mask.sum() >= int(self.settings["min_mask_pixels"]):
                target = {"boxes": torch.from_numpy(box_of(mask))[None], "labels": torch.ones(1, dtype=torch.int64),
                          "masks": torch.from_numpy(mask[None].astype(np.uint8))}
            else:  # shifted out of view, or a negative slice
                target = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
                          "masks": torch.zeros((0, *mask.shape), dtype=torch.uint8)}
            images.append(torch.from_numpy(image)[None].to(self.device))
            targets.append({k: v.to(self.device) for k, v in target.items()})
        return images, targets

    def step(self, iteration: int) -> dict[str, float]:
        import torch

        self.net.train()
        images, targets = self.batch(iteration)
        losses = self.net(images, targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}

    def validate(self) -> dict[str, float]:
        """Detection rate on held-out pancreas slices, false-alarm rate on the others, best-box IoU."""
        if not self.val:
            return {}
        self.model.eval()
        slices = np.stack([s.astype(np.float32) for s, _ in self.val])
        results = detect(self.model, slices, self.device, batch_size=16)
        threshold = float(self.stage["score_threshold"])
        hits, alarms, ious = [], [], []
        for (_, mask), (boxes, scores) in zip(self.val, results):
            found = scores >= threshold
            if mask.sum() >= int(self.settings["min_mask_pixels"]):
                hits.append(bool(found.any()))
                ious.append(_iou(boxes[np.argmax(scores)], box_of(mask)) if len(scores) else 0.0)
            else:
                alarms.append(bool(found.any()))
        self.model.train()
        out = {}
        if hits:
            out.update(slice_detection=float(np.mean(hits)), box_iou=float(np.mean(ious)))
        if alarms:
            out["slice_false_alarms"] = float(np.mean(alarms))
        return out


def _training_sampling(model: torch.nn.Module, settings: dict[str, Any]) -> None:
    # Training-only knobs of torchvision's heads (inference keeps the bundle's own proposal counts).
    if "box_batch_size_per_image" in settings:
        model.roi_heads.fg_bg_sampler.batch_size_per_image = int(settings["box_batch_size_per_image"])
    if "rpn_pre_nms_top_n_train" in settings:
        model.rpn._pre_nms_top_n["training"] = int(settings["rpn_pre_nms_top_n_train"])
    if "rpn_post_nms_top_n_train" in settings:
        model.rpn._post_nms_top_n["training"] = int(settings["rpn_post_nms_top_n_train"])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


def roi_fraction(label: sitk.Image, roi) -> float:
    """The fraction of the label's non-zero voxels whose centres lie inside ``roi`` (1.0 for an empty label)."""
    import SimpleITK as sitk

    index = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)[:, ::-1].astype(float)  # (n, 3) x, y, z
    if not len(index):
        return 1.0
    if roi is None:
        return 0.0
    direction = np.asarray(label.GetDirection()).reshape(3, 3)
    points = np.asarray(label.GetOrigin()) + (index * np.asarray(label.GetSpacing())) @ direction.T
    coords = (points - np.asarray(roi.center)) @ np.asarray(roi.axes).T
    inside = np.all(np.abs(coords) <= np.asarray(roi.size) / 2 + 1e-6, axis=1)
    return float(inside.mean())


def roi_validation(model: torch.nn.Module, stage: dict[str, Any], cases: list, device: str = "cpu") -> dict[str, float]:
    """Phase 1 as inference runs it, on whole validation volumes: how much of each pancreas its ROI holds.

    Returns:
        ``roi_recall`` (mean fraction of pancreas voxels inside the ROI), ``roi_complete`` (fraction of
        cases with at least 99 % inside) and ``roi_found`` (fraction of cases with any ROI).
    """
    from PancreasSegLib.io.volumes import read_ct, read_volume

    if not cases:
        return {}
    model.eval()
    fractions, found = [], []
    for case in cases:
        roi = localize(read_ct(case.image), model, stage, device)
        found.append(roi is not None)
        fractions.append(roi_fraction(read_volume(case.label), roi))
    return {"roi_recall": float(np.mean(fractions)), "roi_complete": float(np.mean(np.array(fractions) >= 0.99)),
            "roi_found": float(np.mean(found))}
