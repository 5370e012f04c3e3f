"""Which roofline hardware preset describes the accelerator this engine runs on."""

from __future__ import annotations

# Substring of the CUDA/ROCm device name → preset in roofline/presets/hardware.toml.
DEVICE_NAME_TO_PRESET = (
    ("H200", "h200"),
    ("H100", "h100-sxm"),
    ("B200", "b200"),
    ("A100", "a100-80gb"),
    ("L40S", "l40s"),
    ("MI300", "mi300x"),
)
CPU_PRESET = "cpu-local"
FALLBACK_GPU_PRESET = "h100-sxm"


def detect_hardware_preset() -> str:
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return CPU_PRESET
    name = current_platform.get_device_name()
    for fragment, preset in DEVICE_NAME_TO_PRESET:
        if fragment in name:
            return preset
    return FALLBACK_GPU_PRESET
