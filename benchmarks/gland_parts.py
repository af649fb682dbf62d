"""Which part of the gland a model misses: recall and ROI coverage by thirds, head to tail.

The reference gland of each case is cut into three parts of equal voxel count along the patient's
right-left axis (LPS x): the right third is roughly the head, the middle the neck and body, the left
the tail. For each part the benchmark reports the share of its voxels inside the prediction (recall)
and inside phase 1's ROI, so an under-segmentation can be told apart: a ROI that stops short (phase 1)
or a segmenter that stops inside a complete ROI (phase 2).

    python benchmarks/gland_parts.py --bundle Resources/Models/pancreas-phantom-v3 \\
        --set second-family=Dataset931_SecondFamily --real-ct-cache CACHE_DIR --out gland-parts-out
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PancreasSegLib.evaluation.parts import PARTS, parts_of  # noqa: E402


def score(predictor, image, reference) -> dict:
    case = predictor.read_case(image)
    prediction = predictor.compute_case(case, allow_empty=True)
    return parts_of(reference, prediction.label, prediction.roi)


def table(per_set: dict[str, dict[str, dict]]) -> str:
    lines = ["| set | n | " + " | ".join(f"{p} recall / in ROI" for p in PARTS) + " |",
             "|---|---|" + "---|" * len(PARTS)]
    for name, cases in per_set.items():
        cells = []
        for part in PARTS:
            recall = np.mean([c[part]["recall"] for c in cases.values()])
            in_roi = np.mean([c[part]["in_roi"] for c in cases.values()])
            cells.append(f"{recall:.2f} / {in_roi:.2f}")
        lines.append(f"| {name} | {len(cases)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import SimpleITK as sitk

    from test_sets import REAL_CT, parse_arguments, real_ct_case

    from PancreasSegLib import Predictor
    from PancreasSegLib.datasets.nnunet import list_cases

    args = parse_arguments(__doc__.splitlines()[0], "gland-parts-out", argv)

    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    per_set: dict[str, dict[str, dict]] = {}
    for item in args.set:
        name, _, folder = item.partition("=")
        per_set[name] = {}
        for case in list_cases(Path(folder)):
            per_set[name][case.case_id] = score(predictor, case.image, sitk.ReadImage(str(case.label)) > 0)
            print(f"  {name} {case.case_id}: {per_set[name][case.case_id]}", flush=True)
    if args.real_ct_cache:
        per_set[REAL_CT] = {"cxr": score(predictor, *real_ct_case(args.real_ct_cache))}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"date": datetime.date.today().isoformat(), "bundle": predictor.describe(), "parts": list(PARTS),
              "cases": per_set}
    (args.out / "gland_parts.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (args.out / "gland_parts.md").write_text(table(per_set) + "\n", encoding="utf-8")
    print(table(per_set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
