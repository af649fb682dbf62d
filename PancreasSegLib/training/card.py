"""The model card a training run writes into its bundle (MODEL_CARD.md), from model.json's record."""

from __future__ import annotations

from typing import Any


def model_card(config: dict[str, Any]) -> str:
    """Markdown: intended use, training data, budget, validation metrics, limits, the retraining command."""
    t = config.get("training", {})
    data = t.get("data", {})
    split = t.get("split", {})
    lines = [
        f"# {config.get('name')} {config.get('version', '')}".rstrip(),
        "",
        "## Intended use",
        "",
        "Research and software testing only. Not a medical device; never use it for diagnosis or treatment.",
        "",
        "## Training data",
        "",
        f"Dataset `{data.get('dataset')}`: {len(data.get('cases', []))} case(s), "
        f"{len(split.get('train', []))} for training and {len(split.get('validation', []))} for validation "
        f"(case-level split, seed {t.get('seed')}). Case IDs and the sha256 of every image and label file are "
        "listed in model.json (`training.data.cases`).",
        "",
    ]
    if t.get("parent"):
        p = t["parent"]
        lines += [f"Fine-tuned from `{p['name']}` version {p['version']} (weights sha256 in model.json).", ""]
    lines += ["## Training budget", "", "| stage | iterations | wall s | CPU s | s/iteration |",
              "| --- | --- | --- | --- | --- |"]
    for stage, s in t.get("stages", {}).items():
        lines.append(f"| {stage} | {s['iterations']} | {s['seconds']} | {s['cpu_seconds']} | "
                     f"{s['seconds_per_iteration']} |")
    for stage, why in t.get("stages_not_trained", {}).items():
        lines.append(f"| {stage} | not trained: {why} | | | |")
    lines += ["", f"Device: {t.get('device')}; software: " + ", ".join(f"{k} {v}" for k, v in
                                                                          t.get("software", {}).items()), ""]
    lines += ["## Validation metrics", ""]
    for key, metrics in config.get("metrics", {}).items():
        if isinstance(metrics, dict) and metrics:
            lines.append(f"- {key}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in metrics.items()))
    inherited = config.get("quality", {}).get("inherited_from")
    if inherited:
        lines += ["", "## The \"unsure\" calibration", "",
                  f"The ranges behind the unsure flags are those of `{inherited['name']}` {inherited['version']}, "
                  "copied with its configuration and not measured on this model: calibrate it on validation "
                  "cases of its own domain with `pancreasseg calibrate` before trusting its flags."]
    lines += ["", "## Limits", "",
              "Validated only on held-out cases of the same dataset; expect worse results on scans unlike them.", ""]
    if t.get("command"):
        lines += ["## Retraining", "", "```", t["command"], "```", ""]
    return "\n".join(lines)
