"""The TFJS graph reader (backbones/tfjs_graph.py) on a tiny graph model the test writes: float16
constants dequantised, the fused ops tfjs writes (no TArgs, tfjs' op names) restored, the answers
those of the same arithmetic in numpy."""

import base64
import json

import numpy as np
import pytest

from stages.lib.backbones.tfjs_graph import TfjsModelError, read_graph_model, read_weights, runner


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _const(name: str, dtype: str = "DT_FLOAT") -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}, "value": {"tensor": {}}}}


def tiny_model(tmp_path, rng):
    """input (n, 4, 4, 2) -> _FusedConv2D 3x3 (BiasAdd, Relu) -> Mean over H, W -> _FusedMatMul (BiasAdd)
    -> Softmax; weights float16 except the int32 reduction axes."""
    weights = {"conv/kernel": rng.normal(size=(3, 3, 2, 3)).astype(np.float16),
               "conv/bias": rng.normal(size=3).astype(np.float16),
               "mean/axes": np.array([1, 2], np.int32),
               "dense/kernel": rng.normal(size=(3, 2)).astype(np.float16),
               "dense/bias": rng.normal(size=2).astype(np.float16)}
    nodes = [{"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
             *[_const(name, "DT_INT32" if name == "mean/axes" else "DT_FLOAT") for name in weights],
             {"name": "conv/Relu", "op": "_FusedConv2D", "input": ["input", "conv/kernel", "conv/bias"],
              "attr": {"T": {"type": "DT_FLOAT"}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                       "padding": _s("SAME"), "data_format": _s("NHWC"),
                       "fused_ops": {"list": {"s": [_s("BiasAdd")["s"], _s("Relu")["s"]]}},
                       "dilations": {"list": {"i": ["1", "1", "1", "1"]}}, "epsilon": {"f": 0}}},
             {"name": "mean", "op": "Mean", "input": ["conv/Relu", "mean/axes"],
              "attr": {"T": {"type": "DT_FLOAT"}, "Tidx": {"type": "DT_INT32"}, "keep_dims": {"b": False}}},
             {"name": "dense/BiasAdd", "op": "_FusedMatMul", "input": ["mean", "dense/kernel", "dense/bias"],
              "attr": {"T": {"type": "DT_FLOAT"}, "fused_ops": {"list": {"s": [_s("BiasAdd")["s"]]}},
                       "transpose_a": {"b": False}, "transpose_b": {"b": False}, "epsilon": {"f": 0}}},
             {"name": "probs", "op": "Softmax", "input": ["dense/BiasAdd"], "attr": {"T": {"type": "DT_FLOAT"}}}]
    manifest = [{"paths": ["tiny.bin"], "weights": [
        {"name": name, "shape": list(value.shape), "dtype": "int32" if value.dtype == np.int32 else "float32",
         **({} if value.dtype == np.int32 else {"quantization": {"dtype": "float16", "original_dtype": "float32"}})}
        for name, value in weights.items()]}]
    (tmp_path / "tiny.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": nodes},
                                                    "weightsManifest": manifest}))
    (tmp_path / "tiny.bin").write_bytes(b"".join(value.astype(value.dtype.newbyteorder("<")).tobytes()
                                                 for value in weights.values()))
    return {name: value.astype(np.float32) if value.dtype == np.float16 else value for name, value in weights.items()}


def numpy_forward(x: np.ndarray, w: dict) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros(x.shape[:3] + (3,), np.float64)
    for dy in range(3):
        for dx in range(3):
            conv += padded[:, dy:dy + 4, dx:dx + 4, :] @ w["conv/kernel"][dy, dx]
    pooled = np.maximum(conv + w["conv/bias"], 0).mean(axis=(1, 2))
    logits = pooled @ w["dense/kernel"] + w["dense/bias"]
    return pooled, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_a_tiny_graph_with_float16_weights_and_fused_ops_runs_as_numpy_computes_it(tmp_path):
    rng = np.random.default_rng(0)
    weights = tiny_model(tmp_path, rng)
    model = read_graph_model(tmp_path / "tiny.json")
    assert model.weights["conv/kernel"].dtype == np.float32 and model.weights["mean/axes"].dtype == np.int32
    x = rng.normal(size=(5, 4, 4, 2)).astype(np.float32)
    pooled, probs = (np.asarray(t) for t in runner(model, ["input"], ["mean", "probs"])(x))
    expected_pooled, expected_probs = numpy_forward(x.astype(np.float64), weights)
    np.testing.assert_allclose(pooled, expected_pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-5, atol=1e-6)


def test_shards_that_do_not_fit_the_manifest_are_refused_by_name():
    manifest = [{"weights": [{"name": "w", "shape": [2], "dtype": "float32"}]}]
    with pytest.raises(TfjsModelError, match="w: the weight shards end at byte 4"):
        read_weights(manifest, b"\0" * 4)
    with pytest.raises(TfjsModelError, match="4 bytes of weights left over"):
        read_weights(manifest, b"\0" * 12)
    with pytest.raises(TfjsModelError, match="stored as uint32"):
        read_weights([{"weights": [{"name": "w", "shape": [1], "dtype": "float32",
                                    "quantization": {"dtype": "uint32"}}]}], b"\0" * 4)


def test_a_layers_model_is_not_taken_for_a_graph_model(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"format": "layers-model", "modelTopology": {}}))
    with pytest.raises(TfjsModelError, match="not a TFJS graph model"):
        read_graph_model(tmp_path / "m.json")
