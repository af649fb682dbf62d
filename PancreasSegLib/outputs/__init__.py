"""What is made from a result besides the label map: :mod:`.surface` (a smoothed mesh with its volume),
:mod:`.montage` (axial, coronal and sagittal QA pictures) and :mod:`.dicom_seg` (a SNOMED-coded DICOM SEG
referencing its source series, whose instances :mod:`.dicom_sources` checks and repairs)."""
