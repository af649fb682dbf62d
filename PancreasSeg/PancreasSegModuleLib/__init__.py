"""Module-side helpers of the PancreasSeg Slicer module.

Only ``sceneAdapter``, ``slicerApplication`` and ``dependencies`` touch Slicer; the rest (the Logic and its
flows, the background job and process runner, the command lines, the progress parser, the model check) is plain
Python that the pytest suite imports without Slicer. What the module shares with ``PancreasSegLib`` (labels and
terminology, ROI JSON, the bundle check, device names, review statuses, the bundled model's name) is imported from it.
"""
