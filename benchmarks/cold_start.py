"""The cold-start curve: Dice on an unseen domain after fine-tuning on k of its corrected cases.

This is what the curation loop buys. From a bundle, ``pancreasseg train --init`` fine-tunes on the
first k cases of POOL (a domain the bundle never saw, e.g. the second phantom family) for a budget of
``--minutes`` plus ``--minutes-per-case`` times k (fixed by default), and the result is scored on TEST
(other cases of that domain). k = 0 is the bundle itself.
Writes ``cold_start.json``, ``cold_start.md`` (a table) and ``cold_start.png`` into OUT.

    python benchmarks/cold_start.py --bundle Resources/Models/pancreas-phantom-v3 \\
        --pool Dataset932_SecondFamilyPool --test Dataset931_SecondFamily --ks 1 3 5 10 --minutes 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def subset(pool: Path, k: int, folder: Path) -> Path:
    """An nnU-Net dataset of the first ``k`` cases of ``pool`` (copies: a dataset refuses links outside it)."""
    from PancreasSegLib.datasets.nnunet import image_path, label_path, list_cases, write_dataset_json

    cases = list_cases(pool)[:k]
    if len(cases) < k:
        raise SystemExit(f"{pool}: only {len(cases)} cases, {k} asked for")
    dataset = folder / f"Dataset{980 + k:03d}_ColdStart{k}"
    (dataset / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dataset / "labelsTr").mkdir(exist_ok=True)
    for case in cases:
        for source, target in ((case.image, image_path(dataset, case.case_id)),
                               (case.label, label_path(dataset, case.case_id))):
            if not target.exists():
                shutil.copyfile(source, target)
    write_dataset_json(dataset, [c.case_id for c in cases], name=f"ColdStart{k}",
                       description=f"the first {k} case(s) of {pool.name}")
    return dataset


def budget(args, k: int) -> float:
    """Minutes of fine-tuning for k corrected cases."""
    return round(args.minutes + args.minutes_per_case * k, 2)


def test_case_ids(test: Path) -> list[str]:
    from PancreasSegLib.datasets.nnunet import list_cases

    return [c.case_id for c in list_cases(test)]


def earlier_rows(args) -> dict[int, dict]:
    """Rows of ``OUT/cold_start.json`` when it was made from the same bundle, pool, test cases and budget."""
    path = args.out / "cold_start.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    same = (record.get("bundle"), record.get("pool"), record.get("test"), record.get("test_cases"),
            record.get("minutes_per_k"), record.get("minutes_per_case", 0.0)) == (
        str(args.bundle), args.pool.name, args.test.name, test_case_ids(args.test), args.minutes,
        args.minutes_per_case)
    if not same:
        raise SystemExit(f"{path}: made from another bundle, pool, test cases or budget; "
                         "drop --keep or use another --out")
    return {int(k): row for k, row in record["rows"].items()}


def main(argv=None) -> int:
    from test_sets import score_dataset, summarise

    from PancreasSegLib import Predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="the starting bundle")
    parser.add_argument("--pool", required=True, type=Path, help="dataset of the new domain to fine-tune on")
    parser.add_argument("--test", required=True, type=Path, help="dataset of the new domain to score on")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--minutes", type=float, default=4.0, help="fine-tuning budget per k")
    parser.add_argument("--minutes-per-case", type=float, default=0.0, metavar="M",
                        help="add M minutes of budget per corrected case (a budget that grows with k)")
    parser.add_argument("--out", type=Path, default=Path("cold-start-out"))
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of an earlier run in OUT with the same bundle, pool, test cases and budget")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    rows = earlier_rows(args) if args.keep else {}
    if 0 not in rows:
        rows[0] = summarise(score_dataset(Predictor.from_bundle(args.bundle, device="cpu"), args.test))
    for k in args.ks:
        dataset = subset(args.pool, k, args.out)
        bundle = args.out / f"k{k}"
        minutes = budget(args, k)
        subprocess.run([sys.executable, "-m", "PancreasSegLib", "train", str(dataset), "-o", str(bundle), "--init",
                        args.bundle, "--minutes", str(minutes), "--val-fraction", "0", "--device", "cpu",
                        "--progress", "none", "--restart"], check=True)
        rows[k] = summarise(score_dataset(Predictor.from_bundle(bundle, device="cpu"), args.test))
        rows[k]["minutes"] = minutes
        print(f"k = {k}: Dice {rows[k]['dice_mean']:.3f}", flush=True)
    rows = dict(sorted(rows.items()))
    record = {"date": datetime.date.today().isoformat(), "bundle": str(args.bundle), "pool": args.pool.name,
              "test": args.test.name, "test_cases": test_case_ids(args.test), "minutes_per_k": args.minutes,
              "minutes_per_case": args.minutes_per_case, "rows": rows}
    (args.out / "cold_start.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = ["| k corrected cases | minutes | Dice mean ± sd | median |", "|---|---|---|---|"]
    lines += [f"| {k} | {r.get('minutes', '–') if k else '–'} | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} | "
              f"{r['dice_median']:.3f} |" for k, r in rows.items()]
    (args.out / "cold_start.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ks = sorted(rows)
    ax.errorbar(ks, [rows[k]["dice_mean"] for k in ks], yerr=[rows[k]["dice_sd"] for k in ks], marker="o", capsize=3)
    ax.set_xlabel("corrected cases of the new domain (k)")
    ax.set_ylabel(f"Dice on {args.test.name}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "cold_start.png", dpi=110)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
