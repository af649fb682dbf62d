"""The label values the project segments, with their names, SNOMED CT codes and display colors.

Values follow MSD Task07: 0 background, 1 pancreas, 2 tumor. Codes and colors are those 3D Slicer's
terminology ("Segmentation category and type - 3D Slicer General Anatomy list") uses, so a segment
we write shows up in Slicer with the right name, color and coded meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Slicer terminology contexts (the lists a segment's codes come from), as Slicer names them.
SLICER_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM code sequence triplet)."""

    value: str
    scheme: str
    meaning: str

    def as_slicer(self) -> str:
        """Slicer's ``scheme^value^meaning`` form."""
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclass(frozen=True)
class LabelInfo:
    """One segment: the label value in the map, a name, its coded meaning and an RGB color in 0..1.

    ``context`` names the Slicer terminology list that holds the category/type pair, so that Slicer's
    terminology selector finds the entry.
    """

    value: int
    name: str
    category: Code
    type: Code
    color: tuple[float, float, float]
    type_modifier: Code | None = None
    anatomic_region: Code | None = None
    context: str = SLICER_ANATOMY_CONTEXT
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        """A plain dict for model.json and dataset.json."""
        out = {
            "value": self.value,
            "name": self.name,
            "category": vars(self.category),
            "type": vars(self.type),
            "color": [round(c, 4) for c in self.color],
        }
        if self.type_modifier:
            out["type_modifier"] = vars(self.type_modifier)
        if self.anatomic_region:
            out["anatomic_region"] = vars(self.anatomic_region)
        if self.context != SLICER_ANATOMY_CONTEXT:
            out["context"] = self.context
        return out

    @classmethod
    def from_json(cls, data: dict) -> LabelInfo:
        """The inverse of :meth:`to_json`."""
        region = data.get("anatomic_region")
        modifier = data.get("type_modifier")
        return cls(
            value=int(data["value"]),
            name=str(data["name"]),
            category=Code(**data["category"]),
            type=Code(**data["type"]),
            color=tuple(float(c) for c in data["color"]),  # type: ignore[arg-type]
            type_modifier=Code(**modifier) if modifier else None,
            anatomic_region=Code(**region) if region else None,
            context=str(data.get("context", SLICER_ANATOMY_CONTEXT)),
        )


ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")

PANCREAS = LabelInfo(
    value=1,
    name="Pancreas",
    category=ANATOMICAL_STRUCTURE,
    type=Code("15776009", "SCT", "Pancreas"),
    color=(249 / 255, 180 / 255, 111 / 255),  # Slicer's GenericAnatomyColors "pancreas"
)

TUMOR = LabelInfo(
    value=2,
    name="Pancreatic tumor",
    category=MORPHOLOGICALLY_ALTERED_STRUCTURE,
    type=Code("108369006", "SCT", "Neoplasm"),
    color=(144 / 255, 238 / 255, 144 / 255),  # Slicer's color for a lesion ("Mass")
    anatomic_region=Code("15776009", "SCT", "Pancreas"),
    # Neoplasm is in the DICOM master list (CID 7159), not in Slicer's general anatomy subset.
    context=DICOM_MASTER_CONTEXT,
)

#: The labels of a pancreas(+tumor) model, by value.
STANDARD_LABELS = {PANCREAS.value: PANCREAS, TUMOR.value: TUMOR}
