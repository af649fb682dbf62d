"""How much reviewers still correct: a summary of a curated dataset's provenance, as text and a plot."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from PancreasSegLib.curation.layout import committed_cases, provenance_path
from PancreasSegLib.curation.provenance import STATUSES, read_provenance
from PancreasSegLib.errors import InputError

EFFORT = (("dice", "Dice proposal vs. correction", ""), ("volume_change_ml", "Volume change", " mL"),
          ("edited_slices", "Edited slices", ""))


def summarize(folder: str | os.PathLike) -> dict:
    """Cases, statuses, reviewers, models and the correction effort (Dice, volume change, edited slices).

    Returns:
        ``{"dataset", "cases", "statuses", "reviewers", "models", "compared", "effort": {metric: {"values",
        "median", "mean", "min", "max"}}, "per_case": [...]}``; ``compared`` counts cases with a proposal.

    Raises:
        InputError: the folder is not a dataset.
    """
    from PancreasSegLib.datasets.nnunet import read_dataset_json

    folder = Path(folder)
    read_dataset_json(folder)
    per_case = []
    for case_id in committed_cases(folder):
        prov = read_provenance(provenance_path(folder, case_id))
        comparison = prov.get("comparison") or {}
        model = prov.get("model") or {}
        per_case.append({
            "case_id": case_id, "status": prov.get("status"), "reviewer": prov.get("reviewer") or "(none)",
            "revision": prov.get("revision", 1), "updated": prov.get("updated"),
            "model": f"{model.get('name', '?')} {model.get('version', '')}".strip() if model else "(none)",
            **{key: comparison.get(key) for key, _, _ in EFFORT},
        })
    effort = {}
    for key, _, _ in EFFORT:
        values = [c[key] for c in per_case if c[key] is not None]
        effort[key] = {"values": values} | ({"median": float(np.median(values)), "mean": float(np.mean(values)),
                                             "min": float(np.min(values)), "max": float(np.max(values))}
                                            if values else {})
    statuses = Counter(c["status"] for c in per_case)
    return {
        "dataset": str(folder), "cases": len(per_case),
        "statuses": {s: statuses.get(s, 0) for s in STATUSES},
        "reviewers": dict(Counter(c["reviewer"] for c in per_case).most_common()),
        "models": dict(Counter(c["model"] for c in per_case).most_common()),
        "compared": sum(c["dice"] is not None for c in per_case),
        "re_exported": sum(int(c["revision"] or 1) > 1 for c in per_case),
        "effort": effort, "per_case": per_case,
    }


def format_text(summary: dict) -> str:
    """The summary as a short plain-text report."""
    lines = [f"Curated dataset {summary['dataset']}: {summary['cases']} case(s), {summary['re_exported']} re-exported",
             "status:    " + ", ".join(f"{n} {s}" for s, n in summary["statuses"].items()),
             "reviewers: " + (", ".join(f"{r} {n}" for r, n in summary["reviewers"].items()) or "none"),
             "models:    " + (", ".join(f"{m} {n}" for m, n in summary["models"].items()) or "none"),
             f"correction effort ({summary['compared']} case(s) with a proposal):"]
    for key, title, unit in EFFORT:
        stats = summary["effort"][key]
        if stats["values"]:
            lines.append(f"  {title:<29} median {stats['median']:.3g}{unit}, mean {stats['mean']:.3g}{unit}, "
                         f"range {stats['min']:.3g} to {stats['max']:.3g}{unit}")
        else:
            lines.append(f"  {title:<29} n/a")
    return "\n".join(lines) + "\n"


def write_report_plot(summary: dict, path: str | os.PathLike) -> Path:
    """A PNG with the status counts and the distributions of Dice, volume change and edited slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from PancreasSegLib.io.atomic import atomic_path, full_extension

    if full_extension(path) != ".png":
        raise InputError("the report plot is a PNG file: use a name ending in .png", path)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), layout="constrained")
    statuses = summary["statuses"]
    axes[0, 0].bar(list(statuses), list(statuses.values()), color=["#e0a040", "#50a050", "#c04040"])
    axes[0, 0].set_title(f"Status ({summary['cases']} cases)")
    axes[0, 0].set_ylabel("cases")
    for ax, (key, title, unit) in zip(axes.ravel()[1:], EFFORT):
        values = summary["effort"][key]["values"]
        if values:
            bins = np.linspace(0, 1, 11) if key == "dice" else min(10, max(1, len(set(values))))
            ax.hist(values, bins=bins, color="#4070c0", edgecolor="white")
        else:
            ax.text(0.5, 0.5, "no proposals", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(f"{title}{' (' + unit.strip() + ')' if unit else ''}")
        ax.set_ylabel("cases")
    for ax in axes.ravel():
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Correction effort: {Path(summary['dataset']).name}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)
