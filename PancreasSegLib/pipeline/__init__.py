"""The two-phase pipeline, one module per step, in the order of the job.

- :mod:`.roi`: the region of interest (an oriented LPS box and its JSON), the hand-over between the phases;
- :mod:`.sampling`: grids and intensity windows shared by both phases and by training;
- :mod:`.phase1`: Mask R-CNN on axial slices, its boxes chained into one ROI with a margin;
- :mod:`.phase2`: the 3D U-Net on the ROI crop (sliding window);
- :mod:`.postprocess`: clean-up (largest component, holes, smoothing) and the way back to the input grid;
- :mod:`.border_guard`: phase 2 again with a larger box while the gland touches a side of the crop;
- :mod:`.predictor`: :class:`~.predictor.Predictor`, the one way through (read, checks, both phases,
  post-processing, staged write).

A step imports only the steps before it.
"""
