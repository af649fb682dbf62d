"""The two networks and the bundle that carries them.

- :mod:`.configs`: the default, tiny and recipe configurations (what model.json holds), in one place;
- :mod:`.networks`: the Mask R-CNN localizer and the MONAI 3D U-Net segmenter, built from a configuration;
- :mod:`.bundle`: a model folder checked completely (manifest, sha256, safetensors) before anything loads;
- :mod:`.device`: CUDA, then Apple MPS, then the CPU.
"""
