"""Module-side helpers of the PancreasSeg Slicer module.

Only ``sceneAdapter`` and ``dependencies`` touch Slicer; the rest (the Logic, the background process
runner, the progress parser, the model check) is plain Python that the pytest suite imports without Slicer.
"""
