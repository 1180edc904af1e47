"""The networks: VGG16 and its head, the custom layers, the block statistics, fitting one network,
calibration, the lung segmenter and the lung inputs, the typed config.json.

`__all__` names the modules other packages import.
"""

__all__ = ["architecture", "block_stats", "calibration", "config", "fitting", "layers", "lung_inputs", "segmenter"]
