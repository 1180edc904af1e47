"""The data layer: images and their decoding, the manifest and splits, validation, augmentation, the
lung view of a film, and data versions.

`__all__` names the modules other packages import.
"""

__all__ = ["augment", "images", "lung_masks", "lung_view", "manifest", "validation", "versions"]
