"""Phase 2 training: MONAI patches, augmentation and loss on the cached crops; validation Dice.

Each step draws ``batch_size`` training crops (seeded by the iteration, so a resumed run draws what
an uninterrupted one would have), cuts one patch from each with ``RandCropByPosNegLabeld``
(``pos_neg`` = 2:1 by default, so two thirds of the patches hold pancreas), and augments it: a small
rotation about every axis with a little scaling (``RandAffined``), intensity scale and shift, and
Gaussian noise. There are no flips: the pancreas lies across the midline with its tail on the
patient's left, and a flipped abdomen is not an abdomen the model will ever see.

The loss is Dice + cross-entropy (``DiceCELoss``). With deep supervision the network's extra
outputs are weighted 1, 1/2, 1/4, ... as nnU-Net does. Validation runs the inference code's sliding
window (:func:`PancreasSegLib.pipeline.phase2.predict_probabilities`) over each whole validation crop and
reports the mean foreground Dice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.phase2 import predict_probabilities

if TYPE_CHECKING:
    import torch


def make_transforms(settings: dict[str, Any], num_classes: int):
    """The MONAI training transform: pad, positive/negative patch, affine, intensity, noise (no flips)."""
    from monai.transforms import (
        Compose,
        RandAffined,
        RandCropByPosNegLabeld,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    patch = [int(p) for p in settings["patch_size_zyx"]]
    pos, neg = settings["pos_neg"]
    p = float(settings["augment_probability"])
    angle = np.deg2rad(float(settings["rotate_deg"]))
    scale = float(settings["scale"])
    keys = ["image", "label"]
    return Compose([
        SpatialPadd(keys, patch, mode="edge"),
        RandCropByPosNegLabeld(keys, "label", patch, pos=float(pos), neg=float(neg), num_samples=1),
        RandAffined(keys, prob=p, rotate_range=(angle,) * 3, scale_range=(scale,) * 3, mode=("bilinear", "nearest"),
                    padding_mode="border"),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.05, prob=0.5),
        RandGaussianNoised("image", std=0.02, prob=0.3),
    ])


class SegmenterTrainer:
    """One training step and the validation of the segmenter, on in-memory cached crops."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_items: list[dict],
                 val_items: list[dict], stage: dict[str, Any], settings: dict[str, Any], seed: int,
                 device: str = "cpu", rank: int = 0, net: torch.nn.Module | None = None) -> None:
        from monai.losses import DiceCELoss

        self.model, self.optimizer = model, optimizer
        self.train_items, self.val_items = train_items, val_items
        self.stage, self.settings, self.seed, self.device = stage, settings, seed, device
        # under torchrun: each rank its own batches (rank 0 those of one process), stepping the DDP wrapper
        self.stream, self.net = ([rank] if rank else []), net if net is not None else model
        self.num_classes = int(stage["params"].get("out_channels", 2))
        self.transforms = make_transforms(settings, self.num_classes)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def batch(self, iteration: int):
        """The (image, label) tensors of one step, (B, 1, Z, Y, X) each; the same iteration gives the same batch."""
        import torch

        rng = np.random.default_rng([self.seed, 2, iteration, *self.stream])
        self.transforms.set_random_state(seed=int(rng.integers(2**31)))
        chosen = rng.choice(len(self.train_items), size=int(self.settings["batch_size"]),
                            replace=len(self.train_items) < int(self.settings["batch_size"]))
        images, labels = [], []
        for i in chosen:
            item = self.train_items[i]
            sample = self.transforms({"image": item["image"][None].astype(np.float32),
                                      "label": item["label"][None].astype(np.float32)})[0]
            images.append(torch.as_tensor(sample["image"]).float())
            labels.append(torch.as_tensor(sample["label"]).round())
        return torch.stack(images).to(self.device), torch.stack(labels).to(self.device)

    def step(self, iteration: int) -> dict[str, float]:
        import torch

        self.net.train()
        x, y = self.batch(iteration)
        out = self.net(x)
        if out.dim() == x.dim() + 1:  # deep supervision: (B, heads, C, Z, Y, X)
            weights = [0.5**k for k in range(out.shape[1])]
            loss = sum(w * self.loss(out[:, k], y) for k, w in enumerate(weights)) / sum(weights)
        else:
            loss = self.loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 12.0)
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def validate(self) -> dict[str, float]:
        """Mean foreground Dice over the validation crops (sliding window as at inference)."""
        if not self.val_items:
            return {}
        self.model.eval()
        dices = []
        for item in self.val_items:
            prob = predict_probabilities(self.model, item["image"].astype(np.float32), self.stage, self.device)
            pred = prob[1:].sum(axis=0) >= float(self.stage.get("threshold", 0.5))
            ref = item["label"] > 0
            total = pred.sum() + ref.sum()
            dices.append(1.0 if total == 0 else 2.0 * np.logical_and(pred, ref).sum() / total)
        self.model.train()
        return {"dice": float(np.mean(dices))}
