"""Files in and out, with their exact geometry; nothing here knows about models.

- :mod:`.atomic`: atomic writes (temporary name in the same folder, then rename); :mod:`.staging`: several
  files that appear together or not at all;
- :mod:`.guards`: SimpleITK behind guards (one-line reasons, headers that would crash ITK refused);
  :mod:`.images`: small pure helpers on images; :mod:`.nifti`: the one NIfTI header parser;
- :mod:`.grid`: an image's geometry and grid comparisons within one tolerance;
- :mod:`.dicom_scan`: the series of a DICOM folder from its headers, and the one to read; :mod:`.dicom`:
  reading it with its geometry checked; :mod:`.segfile`: Slicer ``.seg.nrrd`` with coded segments;
- :mod:`.volumes`: ``read_volume`` / ``write_labelmap`` / ``write_volume`` for every supported format.

Submodules are imported where they are used (nothing is imported here), so that a light caller such
as the Slicer module or ``pancreasseg --help`` pays only for what it asks for.
"""
