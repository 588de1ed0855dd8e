"""ARM CPU boards (Raspberry Pi 4/5, aarch64 or 32-bit ARM Debian): ONNX Runtime on the CPU; the ``tvm``
image variant adds the Apache TVM runtime for artefacts cross-compiled on the host."""

from runners.families import FamilyDescriptor, ImageVariant

FAMILY = FamilyDescriptor(
    name="arm_cpu",
    summary="ARM CPU boards (Raspberry Pi 4/5): cpufreq governor and max frequency",
    machines=("aarch64", "arm64", "armv7l", "armv6l", "armv8l"),
    detect_order=90,
    power_tool="cpufreq",
    power_sections=("rpi",),
    image_folder="arm-cpu",
    default_variant="default",
    variants=(
        ImageVariant("default", "edgegauge/arm-cpu", "images/arm-cpu/Dockerfile", {"RUNTIME": "ort"},
                     default_base="docker.io/library/python:3.11-slim-bookworm", platform="linux/arm64"),
        # ONNX Runtime + the TVM runtime (Relax VM) for .tvm artefacts cross-compiled on the host
        ImageVariant("tvm", "edgegauge/arm-cpu", "images/arm-cpu/Dockerfile", {"RUNTIME": "tvm"}, "-tvm",
                     default_base="docker.io/library/python:3.11-slim-bookworm", platform="linux/arm64",
                     runtime="tvm"),
    ),
    power_sources=("rpi5-pmic",),
)
