"""Curated training data: reviewed labels exported with provenance into an nnU-Net v2 raw dataset.

- :func:`export_case` adds or re-exports one case (crash-safe, locked, history kept);
- :func:`verify_dataset` lists every integrity problem of a dataset folder;
- :func:`summarize` / :func:`write_report_plot` describe how much reviewers corrected.

See docs/curation.md for the folder layout and the crash-safety protocol.
"""

from __future__ import annotations

from PancreasSegLib.curation.export import ExportResult, export_case
from PancreasSegLib.curation.lock import DatasetBusy, DatasetLock
from PancreasSegLib.curation.verify import VerifyResult, verify_dataset

__all__ = ["DatasetBusy", "DatasetLock", "ExportResult", "VerifyResult", "export_case", "verify_dataset"]
