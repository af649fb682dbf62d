"""Is the input usable, before any work is spent on it: each check answers in one line naming the file.

- :mod:`.ct`: a CT about to be segmented (voxel budget, geometry, finite voxels, field of view, HU) and
  :func:`.ct.read_checked_ct`, the pipeline's read step;
- :mod:`.dataset`: a training dataset (labels present, on the image grid, declared values, finite).
"""
