"""x86 servers with NVIDIA A100 GPUs: nvidia-smi clock locks, TensorRT in the image."""

from runners.families import FamilyDescriptor, ImageVariant

FAMILY = FamilyDescriptor(
    name="x86_a100",
    summary="x86 + NVIDIA A100: persistence mode and SM clock lock (nvidia-smi)",
    machines=("x86_64", "amd64"),
    marker_commands=("nvidia-smi",),
    detect_order=30,
    power_tool="nvidia-smi",
    power_sections=("gpu",),
    image_folder="x86-a100",
    default_variant="tensorrt",
    variants=(
        ImageVariant("tensorrt", "edgegauge/x86-a100", "images/x86-a100/Dockerfile", {"VARIANT": "tensorrt"},
                     "", "nvcr.io/nvidia/tensorrt:24.08-py3", "BASE_IMAGE_TENSORRT", "linux/amd64",
                     "tensorrt"),
        ImageVariant("cpu", "edgegauge/x86-a100", "images/x86-a100/Dockerfile", {"VARIANT": "cpu"}, "-cpu",
                     "docker.io/library/python:3.11-slim-bookworm", "BASE_IMAGE_CPU", "linux/amd64"),
    ),
    power_sources=("nvml",),
)
