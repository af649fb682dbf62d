"""Review, correct and export cases in a web page: the browser reading room (on trame-slicer).

Serves a worklist of CASES (a folder of CTs or DICOM series folders, or a dataset to review again) with
Slicer's axial, coronal, sagittal and 3D views, "Segment pancreas" (the warm worker), correction with
Slicer's Segment Editor effects and "Export for training" into DATASET, as `pancreasseg export` does.
Listens on 127.0.0.1 unless --host says otherwise; then every connection needs the token printed at start.
Needs trame-slicer (pip install -e ".[review]") and runs from a source checkout.

examples:
  pancreasseg review demo/ --dataset Dataset501_Curated --reviewer dr-a
  pancreasseg review Dataset501_Curated --dataset Dataset501_Curated --reviewer dr-b --port 8090
  pancreasseg review cts/ --dataset Dataset501_Curated --reviewer dr-a --host 0.0.0.0   # asks for the token
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

#: What the reading room needs beyond the library, as (import name, what to install).
NEEDS = (("trame_slicer", "trame-slicer[standalone]"), ("trame", "trame"), ("slicer", "slicer-core"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from PancreasSegLib.constants import DEVICES

    parser.add_argument("cases", metavar="CASES", help="folder of CTs / DICOM series folders, or a dataset")
    parser.add_argument("--dataset", required=True, metavar="DatasetNNN_Name",
                        help="the curated dataset the reviewed cases are exported into (created when missing)")
    parser.add_argument("--reviewer", required=True, metavar="NAME", help="who reviews (kept in the provenance)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other asks for the access token)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--model", metavar="BUNDLE_DIR", help="model bundle (default: the bundled model)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="device of the runs (default auto)")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.curation.export import create_dataset
    from PancreasSegLib.curation.layout import check_target_folder
    from PancreasSegLib.errors import InputError

    if not args.reviewer.strip():
        raise InputError("--reviewer must name who reviews")
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port} is not a port number")
    cases = Path(args.cases)
    if (cases / "dataset.json").is_file() and cases.resolve() != Path(args.dataset).resolve():
        # Its cases keep their IDs when reviewed again: exported elsewhere they could replace other cases.
        raise InputError("is a curated dataset: review it again into itself (--dataset the same folder), "
                         "or copy its images into a plain folder of CTs", cases)
    missing = [install for name, install in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"the reading room needs {', '.join(missing)}: pip install -e \".[review]\" "
                         "in a source checkout")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        # The views render on the server: without a display, VTK draws through EGL (GPU or Mesa's CPU driver).
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    check_target_folder(args.dataset)
    create_dataset(args.dataset)
    try:
        from PancreasSegWeb.app import ReviewApp
    except ImportError as exc:
        raise InputError(f"the reading room cannot start: {exc} (it runs from a source checkout)") from None
    app = ReviewApp(args.cases, args.dataset, reviewer=args.reviewer.strip(), model=args.model, device=args.device,
                    host=args.host)
    app.serve(args.host, args.port)
    return 0
