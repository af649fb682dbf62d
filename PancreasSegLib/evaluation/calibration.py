"""Calibrating the "unsure" flags on validation cases, and counting how well they flag on test sets.

The predictions of a folder (written by ``pancreasseg segment``, each label with its
``<label>.quality.json``) are scored against their references; :func:`calibration_records` pairs each
case's Dice with its quality measures. :func:`PancreasSegLib.pipeline.quality.calibrate` turns the
records of validation cases into ranges that :func:`store_calibration` writes into a bundle's
model.json (the weights and their sha256 are untouched, so the bundle's provenance stays the same).
:func:`flag_counts` says, on a test set, how many failures were flagged and how many good results were not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PancreasSegLib.errors import InputError
from PancreasSegLib.evaluation.metrics import compare_labels
from PancreasSegLib.evaluation.run import match_cases, read_label
from PancreasSegLib.io.atomic import write_json_atomic
from PancreasSegLib.pipeline.quality import QUALITY_SUFFIX, judge


def calibration_records(pred: str | os.PathLike, ref: str | os.PathLike) -> list[dict[str, Any]]:
    """Per case ``{"case_id", "dice", "found", "measures"}``, from predictions beside their quality records.

    Raises:
        InputError: unmatched cases (see :func:`match_cases`), or a prediction without its quality record.
    """
    records = []
    for case_id, pred_path, ref_path in match_cases(pred, ref)[0]:
        quality_path = Path(f"{pred_path}{QUALITY_SUFFIX}")
        try:
            quality = json.loads(quality_path.read_text(encoding="utf-8"))
            measures = dict(quality["measures"])
        except FileNotFoundError:
            raise InputError("has no quality record beside it (segment it with pancreasseg segment)",
                             pred_path) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"is not a quality record ({exc})", quality_path) from None
        metrics, _ = compare_labels(read_label(pred_path), read_label(ref_path), ("pancreas",), resample=True)
        records.append({"case_id": case_id, "dice": float(metrics["pancreas"].dice),
                        "found": measures.get("mean_probability") is not None, "measures": measures})
    return records


def flag_counts(records: list[dict[str, Any]], calibration: dict[str, Any] | None) -> dict[str, Any]:
    """How the flags did: failures (Dice < 0.5) flagged, and good results (Dice >= 0.8) left unflagged."""
    flagged = [bool(judge(r["measures"], calibration, r["found"])) for r in records]
    bad = [f for r, f in zip(records, flagged) if r["dice"] < 0.5]
    good = [f for r, f in zip(records, flagged) if r["dice"] >= 0.8]
    return {"cases": len(records), "flagged": sum(flagged),
            "failures": len(bad), "failures_flagged": sum(bad),
            "good": len(good), "good_flagged": sum(good)}


def store_calibration(bundle: str | os.PathLike, calibration: dict[str, Any], source: str) -> Path:
    """Write ``calibration`` (and where it came from) into the bundle's model.json, atomically."""
    from PancreasSegLib.model.bundle import MODEL_JSON, load_config

    path = Path(bundle) / MODEL_JSON
    config = load_config(bundle)
    config["quality"] = {**calibration, "validation": source}
    return write_json_atomic(path, config)
