"""Tests of host.models.metrics on small hand-built ONNX graphs with hand-computed values."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from host.errors import InputNotFoundError, ModelFormatError
from host.models.metrics import PARAMS_RULE, metrics_or_error, model_metrics

EXPECTED_KEYS = {
    "params", "params_rule", "macs", "flops", "macs_reason", "macs_by_op", "cdl", "nodes",
    "op_counts", "weight_bytes", "largest_activation_bytes", "largest_activation",
    "footprint_bytes", "precision", "weight_dtypes", "opset", "ir_version", "producer",
    "inputs", "outputs", "sha256", "size_bytes", "nonzeros", "density", "nonzeros_by_layer",
}


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx", opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edgegauge-test", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _w(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _conv_net(tmp_path, *, dtype=np.float32, bias=True, x_shape=(1, 3, 8, 8), name="cnn.onnx"):
    """x[1,3,8,8] -> Conv(4,3x3,pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->10)."""
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    inits = [_w("W", (4, 3, 3, 3), dtype), _w("G", (4, 10), dtype)]
    conv_in, gemm_in = ["x", "W"], ["flat", "G"]
    if bias:
        inits += [_w("B", (4,), dtype), _w("C", (10,), dtype)]
        conv_in.append("B")
        gemm_in.append("C")
    nodes = [
        helper.make_node("Conv", conv_in, ["conv"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", gemm_in, ["y"], name="fc"),
    ]
    return _save(tmp_path, nodes, [_vi("x", list(x_shape), elem)], [_vi("y", [1, 10], elem)],
                 inits, name=name)


# ------------------------------------------------------------------------------------------
# the reference CNN


def test_conv_net_exact_values(tmp_path):
    m = model_metrics(_conv_net(tmp_path))
    assert set(m) == EXPECTED_KEYS
    json.dumps(m)  # JSON-serialisable
    # params: conv W 4*3*3*3=108 + B 4 + gemm G 4*10=40 + C 10
    assert m["params"] == 162
    assert m["params_rule"] == PARAMS_RULE
    assert m["weight_bytes"] == 162 * 4
    assert m["weight_dtypes"] == {"float32": 162}
    # conv: N*Cout*H*W*(Cin/g)*kH*kW = 1*4*8*8*3*3*3; relu 1/element; GAP 1/input element;
    # gemm M*N*K = 1*10*4; biases ignored
    assert m["macs_by_op"] == {"Conv": 6912, "Relu": 256, "GlobalAveragePool": 256, "Gemm": 40}
    assert m["macs"] == 6912 + 256 + 256 + 40
    assert m["flops"] == 2 * m["macs"]
    assert m["macs_reason"] is None
    assert m["cdl"] == 5 and m["nodes"] == 5
    assert m["op_counts"] == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1,
                              "Gemm": 1}
    # largest activation: the conv output 1*4*8*8 float32 (the input is 1*3*8*8)
    assert m["largest_activation"] == "conv"
    assert m["largest_activation_bytes"] == 256 * 4
    assert m["footprint_bytes"] == 162 * 4 + 256 * 4
    assert m["precision"] == "fp32"
    assert m["opset"] == 17 and m["ir_version"] == 8
    assert m["producer"] == "edgegauge-test 1"
    assert m["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 3, 8, 8]}]
    assert m["outputs"] == [{"name": "y", "dtype": "float32", "shape": [1, 10]}]
    data = (tmp_path / "cnn.onnx").read_bytes()
    assert m["size_bytes"] == len(data)
    import hashlib

    assert m["sha256"] == hashlib.sha256(data).hexdigest()


def test_fp16_precision_and_halved_weight_bytes(tmp_path):
    fp32 = model_metrics(_conv_net(tmp_path, name="a.onnx"))
    fp16 = model_metrics(_conv_net(tmp_path, dtype=np.float16, name="b.onnx"))
    assert fp16["precision"] == "fp16"
    assert fp16["params"] == fp32["params"]
    assert fp16["weight_bytes"] * 2 == fp32["weight_bytes"]
    assert fp16["weight_dtypes"] == {"float16": 162}
    assert fp16["largest_activation_bytes"] == 256 * 2
    assert fp16["macs"] == fp32["macs"]


# ------------------------------------------------------------------------------------------
# MAC formulas


def test_depthwise_conv_stride2(tmp_path):
    # x[1,8,16,16], W[8,1,3,3], group 8, stride 2, pad 1 -> y[1,8,8,8]
    node = helper.make_node("Conv", ["x", "W"], ["y"], group=8, strides=[2, 2],
                            pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    path = _save(tmp_path, [node], [_vi("x", [1, 8, 16, 16])], [_vi("y", [1, 8, 8, 8])],
                 [_w("W", (8, 1, 3, 3))])
    m = model_metrics(path)
    assert m["macs"] == 1 * 8 * 8 * 8 * 1 * 3 * 3  # N*Cout*Ho*Wo*(Cin/g)*kH*kW = 4608
    assert m["params"] == 72


def test_grouped_conv(tmp_path):
    # x[1,8,6,6], W[4,4,1,1], group 2 -> y[1,4,6,6]: (Cin/g)=4
    node = helper.make_node("Conv", ["x", "W"], ["y"], group=2, kernel_shape=[1, 1])
    path = _save(tmp_path, [node], [_vi("x", [1, 8, 6, 6])], [_vi("y", [1, 4, 6, 6])],
                 [_w("W", (4, 4, 1, 1))])
    assert model_metrics(path)["macs"] == 1 * 4 * 6 * 6 * 4


def test_batched_matmul(tmp_path):
    node = helper.make_node("MatMul", ["a", "B"], ["y"])
    path = _save(tmp_path, [node], [_vi("a", [2, 3, 4])], [_vi("y", [2, 3, 5])],
                 [_w("B", (4, 5))])
    m = model_metrics(path)
    assert m["macs"] == 2 * 3 * 4 * 5
    assert m["macs_by_op"] == {"MatMul": 120}


def test_conv_transpose(tmp_path):
    # x[1,2,4,4], W[Cin=2, Cout=3, 3, 3], stride 2 -> y[1,3,9,9];
    # MACs = N*Cin*Hin*Win*(Cout/g)*kH*kW
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2])
    path = _save(tmp_path, [node], [_vi("x", [1, 2, 4, 4])], [_vi("y", [1, 3, 9, 9])],
                 [_w("W", (2, 3, 3, 3))])
    m = model_metrics(path)
    assert m["macs"] == 1 * 2 * 4 * 4 * 3 * 3 * 3  # 864
    assert m["largest_activation"] == "y"
    assert m["largest_activation_bytes"] == 3 * 9 * 9 * 4


def test_pooling_and_variadic(tmp_path):
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sum", ["p", "p", "p"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", [1, 2, 4, 4])], [_vi("y", [1, 2, 2, 2])])
    m = model_metrics(path)
    assert m["macs_by_op"] == {"MaxPool": 8 * 4, "Sum": 8 * 2}
    assert m["params"] == 0 and m["weight_bytes"] == 0


# ------------------------------------------------------------------------------------------
# CDL


def test_cdl_branching_dag(tmp_path):
    # x -> Relu -> a ; a -> Sigmoid -> Tanh -> Relu -> b1 ; a -> Neg -> b2 ; Add(b1, b2)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Relu", ["t"], ["b1"]),
        helper.make_node("Neg", ["a"], ["b2"]),
        helper.make_node("Add", ["b1", "b2"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    m = model_metrics(path)
    assert m["nodes"] == 6
    assert m["cdl"] == 5  # Relu, Sigmoid, Tanh, Relu, Add
    assert m["macs"] == 6 * 4


def test_constant_nodes_not_in_cdl_nor_scalar_params(tmp_path):
    nodes = [
        helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(
            np.array(0.0, np.float32))),
        helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(
            np.array(6.0, np.float32))),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
            np.ones((4, 4), np.float32))),
        helper.make_node("Identity", ["k"], ["k2"]),  # weight-side, not datapath
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
        helper.make_node("MatMul", ["c", "k2"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    m = model_metrics(path)
    assert m["nodes"] == 6 and m["op_counts"]["Constant"] == 3
    assert m["cdl"] == 2  # Clip -> MatMul
    assert m["params"] == 16  # the 4x4 Constant; rank-0 Clip bounds are settings
    assert m["macs_by_op"] == {"Clip": 4, "MatMul": 16}


def test_control_flow_body_makes_macs_unknown(tmp_path):
    def branch(op):
        return helper.make_graph([helper.make_node(op, ["x"], ["o"])], op,
                                 [], [_vi("o", [1, 4])])

    nodes = [
        helper.make_node("If", ["cond"], ["y"], name="gate",
                         then_branch=branch("Relu"), else_branch=branch("Neg")),
    ]
    path = _save(tmp_path, nodes, [_vi("cond", [], TensorProto.BOOL), _vi("x", [1, 4])],
                 [_vi("y", [1, 4])])
    m = model_metrics(path)
    assert m["macs"] is None and m["flops"] is None
    assert "'gate' (If)" in m["macs_reason"]
    assert m["cdl"] == 1


# ------------------------------------------------------------------------------------------
# params rule


def test_shape_like_int64_initializer_not_counted(tmp_path):
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "W"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, 16], np.int64), "shape"),
             _w("W", (16, 3))]
    path = _save(tmp_path, nodes, [_vi("x", [1, 4, 2, 2])], [_vi("y", [1, 3])], inits)
    m = model_metrics(path)
    assert m["params"] == 48
    assert m["weight_dtypes"] == {"float32": 48}
    assert m["weight_bytes"] == 48 * 4
    assert m["macs"] == 48
    assert m["cdl"] == 2


def test_int8_weights_precision(tmp_path):
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "s", "zp"], ["W"]),
        helper.make_node("MatMul", ["x", "W"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.ones((8, 2), np.int8), "Wq"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "zp")]
    path = _save(tmp_path, nodes, [_vi("x", [1, 8])], [_vi("y", [1, 2])], inits)
    m = model_metrics(path)
    assert m["precision"] == "int8"
    assert m["params"] == 16 and m["weight_bytes"] == 16
    assert m["cdl"] == 1  # the DequantizeLinear of a weight is not on the datapath


# ------------------------------------------------------------------------------------------
# dynamic shapes


def _symbolic_conv(tmp_path, shape):
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv1", kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1])
    return _save(tmp_path, [node], [_vi("x", shape)], [_vi("y", ["N", 4, None, None])],
                 [_w("W", (4, 3, 3, 3))])


def test_symbolic_spatial_dims_unresolved_then_overridden(tmp_path):
    path = _symbolic_conv(tmp_path, ["N", 3, "H", "W"])
    m = model_metrics(path)
    assert m["macs"] is None and m["flops"] is None and m["macs_by_op"] == {}
    assert "'x'" in m["macs_reason"] and "conv1" in m["macs_reason"]
    assert m["largest_activation_bytes"] is None and m["footprint_bytes"] is None
    assert m["inputs"][0]["shape"] == ["N", 3, "H", "W"]  # as declared
    m = model_metrics(path, shapes={"x": [1, 3, 16, 16]})
    assert m["macs"] == 4 * 16 * 16 * 27
    assert m["macs_reason"] is None
    assert m["footprint_bytes"] == 108 * 4 + 4 * 16 * 16 * 4


def test_symbolic_batch_resolved_by_batch(tmp_path):
    path = _symbolic_conv(tmp_path, ["N", 3, 8, 8])
    one = model_metrics(path)
    four = model_metrics(path, batch=4)
    assert one["macs"] == 4 * 8 * 8 * 27
    assert four["macs"] == 4 * one["macs"]
    assert four["largest_activation_bytes"] == 4 * one["largest_activation_bytes"]


def test_stale_declared_output_shape_is_reinferred(tmp_path):
    # the file declares y as [1,4,8,8] although x has a symbolic batch: batch=4 must win
    node = helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    path = _save(tmp_path, [node], [_vi("x", ["N", 3, 8, 8])], [_vi("y", [1, 4, 8, 8])],
                 [_w("W", (4, 3, 3, 3))])
    m = model_metrics(path, batch=4)
    assert m["macs"] == 4 * 4 * 8 * 8 * 27
    assert m["largest_activation_bytes"] == 4 * 4 * 8 * 8 * 4
    assert m["outputs"][0]["shape"] == [1, 4, 8, 8]  # declared, as in the file


def test_unknown_shapes_name_rejected(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        model_metrics(_conv_net(tmp_path), shapes={"nope": [1]})


# ------------------------------------------------------------------------------------------
# errors


def test_garbage_and_text_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 8)
    text = tmp_path / "readme.onnx"
    text.write_text("this is not a model\n")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(_conv_net(tmp_path).read_bytes()[:300])
    for path in (garbage, text, truncated):
        with pytest.raises(ModelFormatError) as info:
            model_metrics(path)
        assert info.value.path == str(path)
        err = metrics_or_error(path)
        assert err["error"]["type"] == "ModelFormatError"


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        model_metrics(tmp_path / "absent.onnx")
    assert metrics_or_error(tmp_path / "absent.onnx")["error"]["type"] == "InputNotFoundError"


def test_metrics_or_error_passes_metrics_through(tmp_path):
    assert metrics_or_error(_conv_net(tmp_path))["macs"] == 7464


# ------------------------------------------------------------------------------------------
# onnx-tool agreement


def test_agrees_with_onnx_tool(tmp_path):
    onnx_tool = pytest.importorskip("onnx_tool")
    path = _conv_net(tmp_path, bias=False)  # onnx-tool counts bias adds; ours ignores them
    ours = model_metrics(path)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        graph = onnx_tool.Model(str(path), {"verbose": False}).graph
        graph.graph_reorder_nodes()
        graph.shape_infer()
        graph.profile()
    theirs = {n.op_type: int(n.macs[0]) for n in graph.nodemap.values()}
    for op in ("Conv", "Gemm", "Relu"):
        assert ours["macs_by_op"][op] == theirs[op], op
    assert ours["params"] == graph.params


def test_nonzeros_and_density_count_zero_weights_per_layer_and_in_total(tmp_path):
    # a 2x3 Gemm weight with 2 zeros, a bias with 1 zero: 3 of 8 elements are zero
    w = numpy_helper.from_array(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 4.0]], np.float32), "W")
    b = numpy_helper.from_array(np.array([0.0, 5.0], np.float32), "B")
    node = helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="fc", transB=1)
    path = _save(tmp_path, [node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits=[w, b])
    m = model_metrics(path)
    assert m["params"] == 8 and m["nonzeros"] == 5 and m["density"] == 0.625
    assert m["nonzeros_by_layer"] == [{"node": "fc", "op": "Gemm", "weight": "W", "params": 6, "nonzeros": 4,
                                       "density": round(4 / 6, 6)}]
