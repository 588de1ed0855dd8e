"""Input synthesis from a model's declared input metadata.

Dimensions may be fixed (int) or dynamic (a symbolic name, or None). Dynamic dimensions
are resolved, in order: a full shape given for that input (``--shape name=1x3x224x224``),
then ``--batch`` for the leading dimension. Anything still dynamic is an error naming the
input, the axis and the option that would resolve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np

from runners.errors import InputSpecError, UnresolvedShapeError

Dim = Union[int, str, None]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the runtime declares it.

    ``dtype`` is a numpy dtype name ("float32", "int64", ...); ``shape`` holds ints for
    fixed dimensions and a str (symbolic name) or None for dynamic ones.
    """

    name: str
    dtype: str
    shape: tuple

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` (also ``name=1,3,224,224``) into (name, shape).

    Raises:
        InputSpecError: on a missing ``=``, an empty name or a non-positive dimension.
    """
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise InputSpecError(f"--shape {text!r}: expected NAME=D1xD2x..., e.g. input=1x3x224x224")
    parts = dims.replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputSpecError(f"--shape {text!r}: dimensions must be integers") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputSpecError(f"--shape {text!r}: dimensions must be positive")
    return name, shape


def _is_dynamic(dim: Dim) -> bool:
    return not isinstance(dim, int) or dim <= 0


def resolve_shapes(
    specs: Sequence[TensorSpec],
    *,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Return a concrete shape for every input.

    Args:
        specs: the model's inputs.
        batch: value for a dynamic leading dimension (None: leave it unresolved; the CLI
            passes its ``--batch`` default of 1). A fixed leading dimension that differs
            from ``batch`` is an error: the model cannot run at that batch.
        shapes: full shapes per input name; they must agree with every fixed dimension.

    Raises:
        InputSpecError: an override names no input, has the wrong rank, or contradicts
            a fixed dimension.
        UnresolvedShapeError: a dynamic dimension has no value.
    """
    shapes = dict(shapes or {})
    names = {s.name for s in specs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise InputSpecError(
            f"--shape names unknown input(s) {unknown}; the model's inputs are {sorted(names)}"
        )
    resolved: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        if spec.name in shapes:
            given = tuple(int(d) for d in shapes[spec.name])
            if len(given) != len(spec.shape):
                raise InputSpecError(
                    f"--shape for input {spec.name!r} has rank {len(given)}, "
                    f"the model declares {len(spec.shape)} ({_fmt(spec.shape)})"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, given)):
                if not _is_dynamic(want) and want != got:
                    raise InputSpecError(
                        f"--shape for input {spec.name!r}: axis {axis} is fixed to {want} "
                        f"in the model, got {got}"
                    )
            resolved[spec.name] = given
            continue
        dims = []
        for axis, dim in enumerate(spec.shape):
            if not _is_dynamic(dim):
                if axis == 0 and batch is not None and dim != batch and len(spec.shape) > 1:
                    raise InputSpecError(
                        f"input {spec.name!r} has a fixed batch of {dim}; it cannot run at "
                        f"--batch {batch}"
                    )
                dims.append(int(dim))
            elif axis == 0 and batch is not None:
                dims.append(int(batch))
            else:
                label = f"{dim!r}" if isinstance(dim, str) else "unnamed"
                raise UnresolvedShapeError(
                    f"input {spec.name!r} ({_fmt(spec.shape)}): dynamic dimension {label} at "
                    f"axis {axis} is unresolved; pass --shape {spec.name}=" +
                    "x".join(str(d) if not _is_dynamic(d) else "?" for d in spec.shape)
                )
        resolved[spec.name] = tuple(dims)
    return resolved


def _fmt(shape: Sequence[Dim]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def synthesize(
    specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Make seeded random inputs: one C-contiguous array per input, of its dtype and shape.

    Floats are standard normal; signed and unsigned integers uniform in [0, 10) (valid
    as indices for most embedding/gather inputs); booleans uniform.

    Raises:
        InputSpecError: for a dtype we cannot synthesize (e.g. strings).
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = tuple(shapes[spec.name])
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arr = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            arr = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InputSpecError(f"input {spec.name!r}: cannot synthesize dtype {dtype}")
        feeds[spec.name] = np.ascontiguousarray(arr)
    return feeds
