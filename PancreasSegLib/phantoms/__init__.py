"""The synthetic abdominal CT generator: :mod:`.generator` (one case, CT and label), :mod:`.anatomy`
(organs and vessels drawn at random), :mod:`.geometry` (scan geometry: spacing, size, orientation),
:mod:`.render` (HU, noise and blur) and :mod:`.shapes` (tubes, ellipsoids, noise fields).

:mod:`.second_family` is a second, independently built family for testing only (never trained on);
it shares no code with the first."""
