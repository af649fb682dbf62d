"""Evaluating predicted label maps against references: matching cases, summary, CSV, JSON and plot.

Predictions and references are files or folders. In folders, cases are matched by file name without
extension, nnU-Net style (``<case>.nii.gz``); a prediction may be another label format of the same case
(``<case>.seg.nrrd``, ``<case>.nrrd``). A reference folder that is a dataset root uses its ``labelsTr``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.evaluation.metrics import DEFAULT_TOLERANCE_MM, METRIC_NAMES, Metrics, compare_labels
from PancreasSegLib.io.atomic import atomic_path, full_extension, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File types read as label maps.
LABEL_FILE_EXTENSIONS = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Metrics shown in the plot and the printed table, with their display names.
DISPLAY = {"dice": "Dice", "hd95_mm": "HD95 (mm)", "surface_dice": "surface Dice", "volume_error_ml": "vol. err. (mL)"}

DEFINITIONS = {
    "dice": "2|P&R| / (|P|+|R|); 1 when both are empty",
    "hd95_mm": "MONAI compute_hausdorff_distance(percentile=95): the larger of the two directed 95th percentiles "
               "of edge-voxel distances in mm; 0 when both are empty, undefined (null) when exactly one is empty",
    "surface_dice": "MONAI compute_surface_dice (normalised surface distance) at the tolerance; 1 when both are "
                    "empty, 0 when exactly one is empty",
    "volume_error_ml": "volume(prediction) - volume(reference) in mL",
    "volume_error_rel": "volume error / reference volume; undefined when the reference is empty",
    "std": "sample standard deviation (ddof=1)",
    "pancreas": "label 1 or 2 (whole gland, pancreas + tumor)",
    "tumor": "label 2",
}


@dataclass
class CaseResult:
    """The metrics of one case, per structure."""

    case_id: str
    pred: Path
    ref: Path
    metrics: dict[str, Metrics]
    resampled: bool = False

    def rows(self) -> list[dict]:
        """One flat dict per structure (the CSV rows)."""
        return [{"case": self.case_id, "structure": name, **m.as_dict(), "resampled": self.resampled,
                 "prediction": self.pred.name, "reference": self.ref.name} for name, m in self.metrics.items()]


@dataclass
class Evaluation:
    """All cases of one evaluation and the settings used."""

    cases: list[CaseResult]
    structures: tuple[str, ...]
    tolerance_mm: float
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        return [row for case in self.cases for row in case.rows()]

    def summary(self) -> dict:
        """Per structure and metric: mean, median, std, min, max, n and the number of undefined values."""
        out: dict[str, dict] = {}
        for structure in self.structures:
            values = {name: [c.metrics[structure].as_dict()[name] for c in self.cases] for name in METRIC_NAMES}
            out[structure] = {name: _statistics(v) for name, v in values.items()}
        return out


def match_cases(pred: str | os.PathLike, ref: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair prediction and reference files by case ID.

    Returns:
        ``[(case_id, prediction, reference)]`` sorted by case ID, and the case IDs of predictions that have
        no reference (ignored).

    Raises:
        InputError: a missing path, a file paired with a folder, an empty folder, two files of one case in a
            folder, or a reference case without a prediction (the first one is named).
    """
    pred, ref = Path(pred), Path(ref)
    for path in (pred, ref):
        if not path.exists():
            raise InputError("no such file or folder", path)
    if pred.is_file() != ref.is_file():
        raise InputError("give two files or two folders (--pred and --ref differ)", pred)
    if pred.is_file():
        return [(case_id_of(ref), pred, ref)], []
    if (ref / "labelsTr").is_dir() and not _label_files(ref):
        ref = ref / "labelsTr"
    refs, preds = _label_files(ref), _label_files(pred)
    if not refs:
        raise InputError(f"holds no label files ({', '.join(LABEL_FILE_EXTENSIONS)})", ref)
    if not preds:
        raise InputError(f"holds no label files ({', '.join(LABEL_FILE_EXTENSIONS)})", pred)
    missing = sorted(set(refs) - set(preds))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"has no prediction for case {missing[0]}{more}", pred)
    return [(case, preds[case], refs[case]) for case in sorted(refs)], sorted(set(preds) - set(refs))


def case_id_of(path: Path) -> str:
    """The file name without its (compound) extension."""
    ext = full_extension(path)
    return path.name[: len(path.name) - len(ext)] if ext else path.name


def _label_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        # "._name" files are macOS resource forks, other dot files are hidden or temporary.
        if path.name.startswith(".") or not path.is_file() or full_extension(path) not in LABEL_FILE_EXTENSIONS:
            continue
        case = case_id_of(path)
        if case in files:
            raise InputError(f"holds two files for case {case}: {files[case].name} and {path.name}", folder)
        files[case] = path
    return files


def read_label(path: Path) -> sitk.Image:
    """Read a label map (.nii.gz, .nrrd, .seg.nrrd, ...) as an integer SimpleITK image.

    A .seg.nrrd is read with :func:`PancreasSegLib.io.segfile.read_seg_nrrd`, so overlapping layers and
    segment label values are mapped as Slicer wrote them.
    """
    import SimpleITK as sitk

    from PancreasSegLib.io.segfile import read_seg_nrrd
    from PancreasSegLib.io.volumes import read_volume

    image = read_seg_nrrd(path)[0] if full_extension(path) == ".seg.nrrd" else read_volume(path)
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(image)
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputError("is not a label map (it holds non-integer values)", path)
        image = sitk.Cast(image, sitk.sitkInt16)
    return image


def evaluate(pred: str | os.PathLike, ref: str | os.PathLike, structures: Sequence[str] = ("pancreas",),
             tolerance_mm: float = DEFAULT_TOLERANCE_MM, resample: bool = False) -> Evaluation:
    """Evaluate every matched case (see :func:`match_cases` and :func:`.metrics.compare_labels`).

    >>> result = evaluate("predictions/", "Dataset001/labelsTr")  # doctest: +SKIP
    >>> result.summary()["pancreas"]["dice"]["mean"]  # doctest: +SKIP
    0.86
    """
    pairs, extra = match_cases(pred, ref)
    cases = []
    for case_id, pred_path, ref_path in pairs:
        try:
            metrics, resampled = compare_labels(read_label(pred_path), read_label(ref_path), structures,
                                                tolerance_mm, resample)
        except InputError as exc:
            if exc.path:
                raise
            raise InputError(f"case {case_id}: {exc}", pred_path) from None
        cases.append(CaseResult(case_id, pred_path, ref_path, metrics, resampled))
    result = Evaluation(cases, tuple(structures), float(tolerance_mm))
    if extra:
        result.notes.append(f"{len(extra)} prediction(s) without a reference were ignored: {', '.join(extra[:5])}"
                            + (" ..." if len(extra) > 5 else ""))
    n_resampled = sum(c.resampled for c in cases)
    if n_resampled:
        result.notes.append(f"{n_resampled} prediction(s) were resampled onto the reference grid (nearest neighbour)")
    for structure in structures:
        undefined = sum(math.isnan(c.metrics[structure].hd95_mm) for c in cases)
        if undefined:
            result.notes.append(f"{structure}: HD95 is undefined for {undefined} case(s) where exactly one of "
                                "prediction and reference is empty; they are left out of its statistics")
    return result


def _statistics(values: list[float]) -> dict:
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    n = int(finite.size)
    return {
        "mean": float(finite.mean()) if n else None,
        "median": float(np.median(finite)) if n else None,
        "std": float(finite.std(ddof=1)) if n > 1 else None,
        "min": float(finite.min()) if n else None,
        "max": float(finite.max()) if n else None,
        "n": n,
        "n_undefined": int(array.size - n),
    }


def write_outputs(result: Evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``metrics.csv``, ``summary.json`` and ``metrics.png`` into ``folder`` (created if missing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a folder", folder)
    if not folder.parent.is_dir():
        raise InputError(f"output folder {folder.parent} does not exist", folder)
    folder.mkdir(exist_ok=True)
    paths = {"csv": folder / "metrics.csv", "json": folder / "summary.json", "png": folder / "metrics.png"}
    write_text_atomic(paths["csv"], _csv_text(result.rows()))
    write_json_atomic(paths["json"], _json_safe({
        "structures": list(result.structures),
        "surface_dice_tolerance_mm": result.tolerance_mm,
        "n_cases": len(result.cases),
        "summary": result.summary(),
        "notes": result.notes,
        "definitions": DEFINITIONS,
        "cases": result.rows(),
    }))
    write_plot(result, paths["png"])
    return paths


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buffer.getvalue()


def _json_safe(obj):
    # JSON has no NaN: undefined metrics become null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_plot(result: Evaluation, path: Path) -> Path:
    """A box plot with the individual cases as points, one panel per metric, one box per structure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(DISPLAY), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    rng = np.random.default_rng(0)
    for i, (name, title) in enumerate(DISPLAY.items()):
        ax = fig.add_subplot(1, len(DISPLAY), i + 1)
        data, ticks = [], []
        for structure in result.structures:
            values = np.array([c.metrics[structure].as_dict()[name] for c in result.cases], dtype=float)
            data.append(values[np.isfinite(values)])
            undefined = values.size - data[-1].size
            ticks.append(f"{structure}\n({undefined} n/a)" if undefined else structure)
        ax.boxplot(data, showfliers=False)
        for k, values in enumerate(data):
            ax.plot(k + 1 + rng.uniform(-0.12, 0.12, values.size), values, "o", ms=3, alpha=0.6, color="tab:blue")
        ax.set_xticks(range(1, len(result.structures) + 1), ticks)
        ax.set_title(title, fontsize=10)
        if name in ("dice", "surface_dice"):
            ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{len(result.cases)} case(s), surface Dice at {result.tolerance_mm:g} mm", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def format_table(result: Evaluation) -> str:
    """A short human-readable table: one line per case and structure, then mean and median."""
    header = f"{'case':<24} {'structure':<9} {'Dice':>7} {'HD95 mm':>8} {'NSD':>7} {'dV mL':>8}"
    lines = [header, "-" * len(header)]
    for row in result.rows():
        lines.append(f"{row['case'][:24]:<24} {row['structure']:<9} {_num(row['dice'])} {_num(row['hd95_mm'], 8, 2)} "
                     f"{_num(row['surface_dice'])} {_num(row['volume_error_ml'], 8, 2, True)}")
    summary = result.summary()
    lines.append("-" * len(header))
    for stat in ("mean", "median"):
        for structure in result.structures:
            s = summary[structure]
            lines.append(f"{stat + f' (n={len(result.cases)})':<24} {structure:<9} {_num(s['dice'][stat])} "
                         f"{_num(s['hd95_mm'][stat], 8, 2)} {_num(s['surface_dice'][stat])} "
                         f"{_num(s['volume_error_ml'][stat], 8, 2, True)}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _num(value, width: int = 7, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'n/a':>{width}}"
    return f"{value:>{'+' if signed else ''}{width}.{digits}f}"


def print_table(result: Evaluation, file=None) -> None:
    """Print :func:`format_table` to ``file`` (stdout)."""
    print(format_table(result), file=file or sys.stdout)
