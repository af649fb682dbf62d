"""Datasets on disk: :mod:`.nnunet` (the nnU-Net v2 raw layout and ``dataset.json``), :mod:`.convert`
(MSD Task07 and NIH Pancreas-CT into that layout) and :mod:`.label_alignment` (labels stored in another
orientation than their image, put onto its grid by geometry or refused)."""
