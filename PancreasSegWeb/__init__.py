"""The browser reading room of PancreasSeg (``pancreasseg review``), on Slicer's own web stack, trame-slicer.

A web page with a worklist of cases, Slicer's slice and 3D views, "Segment pancreas", correction with the
Segment Editor's effects and "Export for training". It reuses, rather than repeats, the Slicer module's
Logic and scene adapter (``PancreasSeg/PancreasSegModuleLib``): the same coded Pancreas segment, the same
warm worker and ``Predictor`` behind "Segment pancreas", the same export. Modules:

- :mod:`.worklist`: the cases of a CASES folder, their dataset IDs and statuses;
- :mod:`.access`: the token and the one-tab rule, checked on every HTTP and websocket request;
- :mod:`.session`: one open case at a time, its lock, the background runs and the export;
- :mod:`.ui`: the page; :mod:`.app`: the trame application that puts them together.

Only :mod:`.worklist` and :mod:`.access` load without trame-slicer; nothing here is imported by
``PancreasSegLib``, which stays free of Slicer and web packages.
"""
