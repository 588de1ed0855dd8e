"""TensorRT versions and what each can do (Python 3.8): :func:`parse_version`, :func:`features` and
:func:`precision_plan`, which refuses with :class:`~runners.errors.UnsupportedFeatureError` what a
version cannot build before anything is built (TensorRT 11 networks are strongly typed and it has no
FP16/INT8 builder flags, so fp16 needs an fp16 ONNX and int8 a QDQ ONNX).
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from runners.errors import UnsupportedFeatureError

PRECISIONS = ("fp32", "fp16", "int8")
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str) -> Tuple[int, int, int]:
    """``(major, minor, patch)`` of a TensorRT version string: ``"8.5.2.2"`` -> (8, 5, 2),
    ``"10.3.0"`` -> (10, 3, 0), ``"11.0.0.7"``, ``"10.0.0b6"`` -> (10, 0, 0).

    Raises:
        ValueError: not a version.
    """
    m = _VERSION.match(str(text))
    if not m:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def features(version: Tuple[int, int, int]) -> dict:
    """What TensorRT ``version`` can do here (all True/False):

    * ``precision_flags``: BuilderFlag.FP16/INT8 (weak typing) exist — 8.5 to 10.x; TensorRT 11
      removed them (networks are strongly typed: NVIDIA, "Migrating from TensorRT 10.x to 11.x");
    * ``strongly_typed``: networks are always strongly typed (11+);
    * ``explicit_batch_flag``: ``create_network`` needs the EXPLICIT_BATCH flag (8.x);
    * ``entropy_calibrator``: IInt8EntropyCalibrator2 exists (8.5–10.x; deprecated from 10.1);
    * ``device_memory_size_v2``: ``ICudaEngine.device_memory_size_v2`` (10.1+; else
      ``device_memory_size``).

    Raises:
        UnsupportedFeatureError: older than 8.5 (no ``execute_async_v3`` / name-based I/O).
    """
    major, minor, _ = version
    if (major, minor) < (8, 5):
        raise UnsupportedFeatureError(
            f"TensorRT {major}.{minor} is too old: this backend needs 8.5 or newer "
            "(execute_async_v3 and name-based tensor I/O; JetPack 5.1 ships 8.5)"
        )
    return {
        "precision_flags": major <= 10,
        "strongly_typed": major >= 11,
        "explicit_batch_flag": major == 8,
        "entropy_calibrator": major <= 10,
        "device_memory_size_v2": (major, minor) >= (10, 1),
    }


def precision_plan(version: Tuple[int, int, int], precision: str, *, has_fp16: bool, has_qdq: bool,
                   calibration: Optional[str] = None) -> dict:
    """How ``precision`` is obtained on ``version`` for a network with (``has_fp16``) half-precision
    tensors and (``has_qdq``) Quantize/Dequantize layers: ``{"precision", "builder_flags": [names],
    "typing": "weak"|"strong", "recipe"}``. ``"auto"`` takes the model's own: int8 with Q/DQ layers,
    fp16 with half tensors, else fp32 (the host's precision variants are such models). int8 without
    Q/DQ layers uses the entropy calibrator (``IInt8EntropyCalibrator2``, TensorRT 8.5-10.x only)
    over ``calibration`` (a digest of the calibration data, part of the recipe).

    Raises:
        UnsupportedFeatureError: the version cannot do it (TensorRT 11: fp16 from an fp32 ONNX or
            int8 without Q/DQ; 8.5-10.x: int8 without Q/DQ and without calibration data).
        ValueError: an unknown precision.
    """
    if precision == "auto":
        precision = "int8" if has_qdq else "fp16" if has_fp16 else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: auto or one of {', '.join(PRECISIONS)}")
    feats = features(version)
    name = ".".join(map(str, version))
    if feats["strongly_typed"]:
        if precision == "fp16" and not has_fp16:
            raise UnsupportedFeatureError(
                f"TensorRT {name} has no FP16/INT8 builder flags (networks are strongly typed): "
                "precision fp16 needs an fp16 ONNX model; make one with `host zoo convert --precision fp16` "
                "(or bench --precision fp16), then run it with precision=fp16"
            )
        if precision == "int8" and not has_qdq:
            raise UnsupportedFeatureError(
                f"TensorRT {name} has no FP16/INT8 builder flags (networks are strongly typed): "
                "precision int8 needs a QDQ ONNX model (QuantizeLinear/DequantizeLinear); make one with "
                "`host zoo quantize` (or bench --precision int8)"
            )
        return {
            "precision": precision,
            "builder_flags": [],
            "typing": "strong",
            "recipe": {"fp32": "onnx_types", "fp16": "fp16_onnx", "int8": "qdq_onnx"}[precision],
        }
    if precision == "int8" and not has_qdq:
        if not calibration:
            raise UnsupportedFeatureError(
                "precision int8 needs a QDQ ONNX model (explicit quantization, every TensorRT version; "
                "make one with `host zoo quantize`) or, on TensorRT 8.5-10.x, calibration_data=FOLDER "
                "for the entropy calibrator")
        return {"precision": "int8", "builder_flags": ["INT8", "FP16"], "typing": "weak",
                "recipe": f"entropy_calibrator:{calibration}"}
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    recipe = {"fp32": "fp32", "fp16": "builder_flag_fp16", "int8": "qdq_onnx+int8_flag"}[precision]
    return {"precision": precision, "builder_flags": flags, "typing": "weak", "recipe": recipe}
