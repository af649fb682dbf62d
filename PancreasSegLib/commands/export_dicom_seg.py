"""Write a label map as a DICOM SEG object referencing its source CT series (SNOMED-coded segments).

The label is checked against the series' grid and resampled (nearest neighbour) onto it when the grids
differ. Segments: 1 Pancreas (SNOMED CT 15776009), 2 Pancreatic tumor (108369006), those present only.

example:
  pancreasseg export-dicom-seg --seg pancreas.nii.gz --dicom ct_series/ -o pancreas_seg.dcm \\
      --model Resources/Models/pancreas-phantom-v1
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from PancreasSegLib.outputs.dicom_seg import ALGORITHM_TYPES

    parser.add_argument("--seg", required=True, help="the label map (.nii.gz, .nrrd, .seg.nrrd, ...)")
    parser.add_argument("--dicom", required=True, metavar="SERIES_DIR", help="folder of the source CT series")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.dcm", help="the DICOM SEG file to write")
    parser.add_argument("--series", metavar="UID", help="the series to reference when the folder holds several")
    parser.add_argument("--model", metavar="BUNDLE_DIR", help="model bundle: its name and version identify the "
                        "algorithm (default: this program)")
    parser.add_argument("--algorithm-type", choices=ALGORITHM_TYPES, default="automatic",
                        help="automatic: model output; semiautomatic: reviewed/corrected; manual (default: automatic)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.curation.provenance import model_info
    from PancreasSegLib.outputs.dicom_seg import write_dicom_seg

    model = model_info(args.model) if args.model else None
    summary = write_dicom_seg(args.seg, args.dicom, args.output, series=args.series, model=model,
                              algorithm_type=args.algorithm_type)
    if args.json:
        print(json.dumps(summary))
    else:
        names = ", ".join(s["label"] for s in summary["segments"])
        note = " (label resampled onto the series grid)" if summary["resampled"] else ""
        print(f"wrote {summary['path']}: {len(summary['segments'])} segment(s) ({names}), "
              f"{summary['frames']} frame(s){note}")
    return 0
