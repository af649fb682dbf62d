"""Add a reviewed (corrected) case to a curated nnU-Net v2 dataset, with provenance and history.

The image, the corrected label and (optionally) the model's proposal are checked before anything is
written: the label must have the image's grid and hold declared label values only. Exporting a case ID
that exists keeps the earlier label, proposal and provenance under history/<case>/<time>/.

examples:
  pancreasseg export --image ct.nii.gz --label corrected.nii.gz --proposal ai.nii.gz \\
      --dataset Dataset501_Curated --reviewer dr-a --model Resources/Models/pancreas-phantom-v1
  pancreasseg export --image dicom/ --label corrected.seg.nrrd --dataset Dataset501_Curated --json
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from PancreasSegLib.curation.provenance import STATUSES

    parser.add_argument("--image", required=True, help="the CT: a NIfTI/NRRD/MHA file or a DICOM series folder")
    parser.add_argument("--label", required=True, help="the reviewed label map in the image's grid")
    parser.add_argument("--proposal", help="the model's original label map (to measure the correction)")
    parser.add_argument("--dataset", required=True, help="the curated dataset folder (created when missing)")
    parser.add_argument("--case-id", help="case ID (default: the next free case_NNNN); never a patient name")
    parser.add_argument("--reviewer", help="who reviewed the label")
    parser.add_argument("--status", choices=STATUSES, default="corrected",
                        help="corrected: proposal edited; approved: accepted as is; rejected: discarded and "
                             "redrawn (default: corrected)")
    parser.add_argument("--note", help="free-text note kept in the provenance")
    parser.add_argument("--model", metavar="BUNDLE_DIR", help="the model bundle that made the proposal")
    parser.add_argument("--series", metavar="UID", help="the DICOM series to read when the folder holds several")
    parser.add_argument("--lock-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long to wait for another export into the same dataset (default: 120)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.curation.export import export_case

    result = export_case(args.image, args.label, args.dataset, proposal=args.proposal, case_id=args.case_id,
                         reviewer=args.reviewer, status=args.status, note=args.note, model=args.model,
                         series=args.series, lock_timeout=args.lock_timeout)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    line = f"exported {result.case_id} ({result.status}, revision {result.revision}) to {result.dataset}"
    if result.comparison is not None:
        line += (f": Dice {result.dice:.3f} vs. proposal, volume change {result.volume_change_ml:+.2f} mL, "
                 f"{result.edited_slices} edited slice(s)")
    if result.history:
        line += f"; previous export kept in {result.history}"
    print(line)
    for message in result.recovered:
        print(f"note: {message}")
    return 0
