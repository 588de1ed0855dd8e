"""NVIDIA Jetson boards (JetPack 5 / 6): nvpmodel and jetson_clocks, TensorRT in the image."""

from runners.families import FamilyDescriptor, ImageVariant

FAMILY = FamilyDescriptor(
    name="jetson",
    summary="NVIDIA Jetson (JetPack 5/6): nvpmodel mode, jetson_clocks, fan",
    marker_files=("etc/nv_tegra_release",),
    detect_order=10,
    power_tool="nvpmodel",
    power_sections=("nvpmodel", "jetson_clocks"),
    image_folder="jetson",
    default_variant="jp5",
    variants=(
        ImageVariant("jp5", "edgegauge/jetson", "images/jetson/Dockerfile", {"JETPACK": "5"}, "-jp5",
                     "nvcr.io/nvidia/l4t-jetpack:r35.4.1", "BASE_IMAGE_JP5", "linux/arm64", "tensorrt"),
        ImageVariant("jp6", "edgegauge/jetson", "images/jetson/Dockerfile", {"JETPACK": "6"}, "-jp6",
                     "nvcr.io/nvidia/l4t-jetpack:r36.4.0", "BASE_IMAGE_JP6", "linux/arm64", "tensorrt"),
    ),
    power_sources=("jetson-ina3221",),
)
