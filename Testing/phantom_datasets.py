"""Small phantom datasets in the nnU-Net v2 raw layout, for the training tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_phantom_dataset(folder: Path, seeds: Sequence[int]) -> Path:
    """Write one small phantom (about 2.5 mm voxels) per seed into ``folder`` (imagesTr, labelsTr, dataset.json)."""
    from PancreasSegLib.datasets.nnunet import image_path, label_path, write_dataset_json
    from PancreasSegLib.io.volumes import write_labelmap, write_volume
    from PancreasSegLib.phantoms.generator import make_phantom

    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    ids = []
    for seed in seeds:
        image, label = make_phantom(seed, preset="small")
        case = f"phantom_{seed:05d}"
        write_labelmap(label, label_path(folder, case))
        write_volume(image, image_path(folder, case))
        ids.append(case)
    write_dataset_json(folder, ids)
    return folder
