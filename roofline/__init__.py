"""specgate's roofline model of speculative decoding: step cost, expected tokens, speedup, γ*.

Pure Python and numpy; torch is imported only inside :func:`roofline.calibration.measure_hardware`.
"""

from roofline.specs import HardwareSpec, ModelSpec, load_hardware, load_model

__all__ = ["HardwareSpec", "ModelSpec", "load_hardware", "load_model"]
