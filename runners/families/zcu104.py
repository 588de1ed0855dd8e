"""Xilinx ZCU104 (Vitis AI 3.0 board image, DPU): no Docker, a native bundle; VART."""

from runners.families import FamilyDescriptor, ImageVariant

FAMILY = FamilyDescriptor(
    name="zcu104",
    summary="Xilinx ZCU104 (Vitis AI 3.0, DPU): nothing to tune, the DPU is checked",
    marker_commands=("xdputil",),
    detect_order=20,
    power_tool="xdputil",
    power_sections=("dpu",),
    image_folder="vitis-ai",
    default_variant="bundle",
    variants=(
        ImageVariant("bundle", runtime="vart", bundle=True),
        ImageVariant("compile", "edgegauge/vitis-ai-compile", "images/vitis-ai/Dockerfile",
                     default_base="docker.io/xilinx/vitis-ai-pytorch-cpu:ubuntu2004-3.0.0.106",
                     platform="linux/amd64", runtime="vart"),
    ),
)
