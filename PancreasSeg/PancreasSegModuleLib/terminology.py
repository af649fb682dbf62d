"""Slicer terminology entries for our labels (what the Segment Editor shows as the segment's meaning).

Slicer stores a segment's coded meaning as one string tag (``vtkSegment.GetTerminologyEntryTagName()``)::

    context~category~type~typeModifier~anatomicContext~anatomicRegion~anatomicRegionModifier

each code written ``scheme^value^meaning`` and an absent one as ``^^``. The codes come from
``PancreasSegLib.labels`` so the module, the ``.seg.nrrd`` writer and DICOM SEG agree.
"""

from __future__ import annotations

from PancreasSegLib.labels import Code, LabelInfo

TYPE_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_EMPTY = "^^"


def _code(code: Code | None) -> str:
    return code.as_slicer() if code is not None else _EMPTY


def terminologyEntry(label: LabelInfo) -> str:
    """The Slicer 5.x terminology entry string of ``label``.

    >>> from PancreasSegLib.labels import PANCREAS
    >>> terminologyEntry(PANCREAS).split("~")[2]
    'SCT^15776009^Pancreas'
    """
    return "~".join([
        TYPE_CONTEXT,
        _code(label.category),
        _code(label.type),
        _code(label.type_modifier),
        ANATOMIC_CONTEXT,
        _code(label.anatomic_region),
        _EMPTY,
    ])
