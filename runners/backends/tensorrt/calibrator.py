"""Implicit int8 on TensorRT 8.5-10.x: the calibration batches (a folder of ``.npy`` samples) and the
entropy calibrator that feeds them (Python 3.8; ``tensorrt`` and the CUDA runtime are passed in).
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from runners.backends.tensorrt.engine_cache import write_bytes
from runners.errors import InputSpecError


def _files(folder: str, name: str) -> list:
    """The ``.npy`` files of ``folder``, sorted. Raises InputSpecError: none."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    if not files:
        raise InputSpecError(f"calibration_data {folder}: no .npy file (input {name!r})")
    return files


def calibration_digest(folder: str, name: str) -> str:
    """sha256 (16 hex) over the names and bytes of ``folder``'s ``.npy`` files (sorted), the
    calibration data's part of an engine recipe. Raises InputSpecError: no ``.npy`` file."""
    digest = hashlib.sha256()
    for f in _files(folder, name):
        with open(os.path.join(folder, f), "rb") as fh:
            digest.update(f.encode() + b"\0" + fh.read())
    return digest.hexdigest()[:16]


def calibration_batches(folder: str, name: str, batch: int,
                        sample_shape: Optional[Sequence[int]] = None) -> Tuple[list, str]:
    """The calibration batches for input ``name``: every ``.npy`` file of ``folder`` (sorted)
    holds samples along its first axis with the input's full rank (as the host's calibration
    folders do); they are concatenated and cut into batches of ``batch`` (the run's batch; a last
    partial batch is dropped). ``sample_shape``: the run's shape of one sample (the input's dims
    after the batch), checked when given. Returns (list of float32 arrays, :func:`calibration_digest`).

    Raises:
        InputSpecError: no ``.npy`` file, fewer samples than one batch, or samples of another shape.
    """
    arrays = [np.load(os.path.join(folder, f)).astype(np.float32) for f in _files(folder, name)]
    data = np.concatenate(arrays)
    if sample_shape is not None and tuple(data.shape[1:]) != tuple(int(d) for d in sample_shape):
        raise InputSpecError(f"calibration_data {folder}: samples of shape {list(data.shape[1:])}, but input "
                             f"{name!r} runs at {[batch] + [int(d) for d in sample_shape]}")
    n = len(data) // batch
    if n < 1:
        raise InputSpecError(f"calibration_data {folder}: {len(data)} samples, fewer than one batch "
                             f"of {batch}")
    batches = [np.ascontiguousarray(data[i * batch:(i + 1) * batch]) for i in range(n)]
    return batches, calibration_digest(folder, name)


def make_calibrator(trt, cuda, batches: list, cache_path: str):
    """An ``trt.IInt8EntropyCalibrator2`` feeding ``batches`` (float32 arrays, one per
    calibration step) through one device buffer, with its calibration table cached at
    ``cache_path`` (TensorRT developer guide, "INT8 calibration using Python")."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches, self.index = batches, 0
            self.device = cuda.device_alloc(batches[0].nbytes)
            self.stream = cuda.Stream()

        def get_batch_size(self):
            return int(batches[0].shape[0])

        def get_batch(self, names):
            if self.index >= len(self.batches):
                return None
            cuda.memcpy_htod_async(self.device, self.batches[self.index], self.stream)
            self.stream.synchronize()
            self.index += 1
            return [int(self.device)]

        def read_calibration_cache(self):
            if os.path.exists(cache_path):
                with open(cache_path, "rb") as fh:
                    return fh.read()
            return None

        def write_calibration_cache(self, cache):
            write_bytes(cache_path, bytes(cache))

    return _Calibrator()
