"""How good a segmentation is: :mod:`.metrics` (Dice, HD95, surface Dice, volume error; MONAI's
definitions), :mod:`.run` (folders of predictions against references, tables and plots) and
:mod:`.baselines` (the HU-threshold bar that shows how hard the phantoms are) and :mod:`.parts` (which part
of the gland, head to tail, a result misses, and whether phase 1's ROI held it)."""
