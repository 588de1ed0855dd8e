"""Input shape resolution and synthesis."""

import numpy as np
import pytest

from runners.errors import InputSpecError, UnresolvedShapeError
from runners.inputs import TensorSpec, parse_shape_option, resolve_shapes, synthesize


def test_parse_shape_option():
    assert parse_shape_option("input=1x3x224x224") == ("input", (1, 3, 224, 224))
    assert parse_shape_option("a=b=2,3") == ("a=b", (2, 3))
    for bad in ("1x3", "=1x3", "x=1xa", "x=0x3", "x="):
        with pytest.raises(InputSpecError):
            parse_shape_option(bad)


SPEC = TensorSpec("x", "float32", ("N", 3, "H", "W"))


def test_batch_resolves_leading_dynamic_dim_only():
    fixed = TensorSpec("x", "float32", ("N", 3, 8, 8))
    assert resolve_shapes([fixed], batch=4) == {"x": (4, 3, 8, 8)}
    with pytest.raises(UnresolvedShapeError) as err:
        resolve_shapes([SPEC], batch=1)
    msg = str(err.value)
    assert "'x'" in msg and "'H'" in msg and "axis 2" in msg and "--shape x=" in msg


def test_unnamed_dynamic_dim_is_unresolved_without_batch():
    with pytest.raises(UnresolvedShapeError, match="unnamed"):
        resolve_shapes([TensorSpec("x", "float32", (None, 3))], batch=None)


def test_full_shape_override_and_its_checks():
    assert resolve_shapes([SPEC], batch=1, shapes={"x": [2, 3, 16, 16]}) == {"x": (2, 3, 16, 16)}
    with pytest.raises(InputSpecError, match="rank"):
        resolve_shapes([SPEC], shapes={"x": [1, 3, 16]})
    with pytest.raises(InputSpecError, match="axis 1 is fixed to 3"):
        resolve_shapes([SPEC], shapes={"x": [1, 4, 16, 16]})
    with pytest.raises(InputSpecError, match="unknown input"):
        resolve_shapes([SPEC], shapes={"y": [1, 3, 16, 16]})


def test_fixed_batch_conflicts_with_other_batch():
    fixed = TensorSpec("x", "float32", (1, 3, 8, 8))
    assert resolve_shapes([fixed], batch=1) == {"x": (1, 3, 8, 8)}
    with pytest.raises(InputSpecError, match="fixed batch of 1"):
        resolve_shapes([fixed], batch=8)


def test_synthesize_dtypes_shapes_and_seed():
    specs = [TensorSpec("f", "float16", (2, 3)), TensorSpec("i", "int64", (5,)),
             TensorSpec("b", "bool", (4,))]
    shapes = {"f": (2, 3), "i": (5,), "b": (4,)}
    a = synthesize(specs, shapes, seed=7)
    b = synthesize(specs, shapes, seed=7)
    c = synthesize(specs, shapes, seed=8)
    assert a["f"].dtype == np.float16 and a["f"].shape == (2, 3)
    assert a["i"].dtype == np.int64 and a["i"].min() >= 0 and a["i"].max() < 10
    assert a["b"].dtype == np.bool_
    assert all(arr.flags["C_CONTIGUOUS"] for arr in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["f"], c["f"])
    with pytest.raises(InputSpecError, match="cannot synthesize"):
        synthesize([TensorSpec("s", "str", (1,))], {"s": (1,)})
