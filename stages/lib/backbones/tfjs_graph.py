"""TensorFlow.js graph models run in the project's own TensorFlow, no node at run time.

A TFJS graph model (`format: graph-model`) is a GraphDef written as JSON (`modelTopology`) whose
constants are left empty, plus the weight shards its `weightsManifest` lists: every constant's
bytes in manifest order, the shards concatenated. This reader
- parses the GraphDef (proto3 JSON: bytes in base64, 64-bit integers as strings);
- reads each constant from the shards: float32 as is, float16 (tfjs' `quantization.dtype: float16`)
  dequantised to float32, uint8/uint16 as `q * scale + min`, int32 as is; and writes it into its
  Const node;
- restores what the tfjs converter drops from TF's fused ops (_FusedConv2D, _FusedMatMul,
  _FusedDepthwiseConv2dNative, which tfjs spells without the underscore): `num_args` (the inputs past
  the first two) and `TArgs` (their types), without which TF refuses to run them;
- imports it into a `tf.function`-like callable pruned to the named inputs and outputs.

Used by the FaceRes and GEAR families (faceres.py, gear.py) and any later TFJS family.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FUSED_OPS = {"_FusedConv2D": "_FusedConv2D", "_FusedMatMul": "_FusedMatMul",
             "FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative",
             "_FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}
_STORED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16, "float32": np.float32, "int32": np.int32}


class TfjsModelError(ValueError):
    """A graph model and weight shards that do not fit together, or a layout this reader does not know."""


@dataclass(frozen=True)
class GraphModel:
    """A TFJS graph model read into memory: the GraphDef as a dict (its JSON) and its constants."""

    topology: dict
    weights: dict[str, np.ndarray]
    signature: dict


def read_weights(manifest: Sequence[dict], data: bytes) -> dict[str, np.ndarray]:
    """The named tensors of a weights manifest, in order out of `data` (its shards concatenated);
    float16 and integer-quantised float tensors come back as float32."""
    tensors, offset = {}, 0
    for spec in (weight for group in manifest for weight in group["weights"]):
        quantisation = spec.get("quantization") or {}
        stored = quantisation.get("dtype", spec["dtype"])
        if stored not in _STORED or spec["dtype"] not in ("float32", "int32"):
            raise TfjsModelError(f"{spec['name']}: dtype {spec['dtype']} stored as {stored} is not supported")
        dtype = np.dtype(_STORED[stored]).newbyteorder("<")
        end = offset + math.prod(spec["shape"]) * dtype.itemsize
        if end > len(data):
            raise TfjsModelError(f"{spec['name']}: the weight shards end at byte {len(data)}, before {end}")
        values = np.frombuffer(data[offset:end], dtype=dtype)
        if stored in ("uint8", "uint16"):
            values = values.astype(np.float32) * np.float32(quantisation["scale"]) + np.float32(quantisation["min"])
        tensors[spec["name"]] = values.astype(np.dtype(spec["dtype"])).reshape(spec["shape"])
        offset = end
    if offset != len(data):
        raise TfjsModelError(f"{len(data) - offset} bytes of weights left over after the manifest's tensors")
    return tensors


def read_graph_model(model_json: Path, shards: Sequence[Path] | None = None) -> GraphModel:
    """The graph model of `model_json`; its weights from `shards` in order (default: the manifest's
    paths, beside the JSON)."""
    model = json.loads(Path(model_json).read_text())
    if model.get("format") != "graph-model" or "modelTopology" not in model:
        raise TfjsModelError(f"{model_json}: not a TFJS graph model (format {model.get('format')!r})")
    manifest = model["weightsManifest"]
    if shards is None:
        shards = [Path(model_json).parent / path for group in manifest for path in group["paths"]]
    data = b"".join(Path(shard).read_bytes() for shard in shards)
    return GraphModel(model["modelTopology"], read_weights(manifest, data), model.get("signature", {}))


def _restore_fused(node: dict) -> None:
    """Give a fused op the name TF registers and the `num_args` (and, where its op takes them, `TArgs`)
    attributes tfjs drops."""
    from tensorflow.python.framework import op_def_registry

    node["op"] = FUSED_OPS[node["op"]]
    attrs = node.setdefault("attr", {})
    args = len([name for name in node.get("input", []) if not name.startswith("^")]) - 2
    attrs["num_args"] = {"i": str(args)}
    if any(attr.name == "TArgs" for attr in op_def_registry.get(node["op"]).attr):
        attrs["TArgs"] = {"list": {"type": [attrs.get("T", {}).get("type", "DT_FLOAT")] * args}}


def graph_def(model: GraphModel):
    """The GraphDef TF can import: constants filled in, fused ops restored."""
    import tensorflow as tf
    from google.protobuf import json_format

    topology = json.loads(json.dumps(model.topology))  # a copy to edit
    for node in topology["node"]:
        if node["op"] in FUSED_OPS:
            _restore_fused(node)
    definition = json_format.ParseDict(topology, tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    for node in definition.node:
        if node.op == "Const":
            if node.name not in model.weights:
                raise TfjsModelError(f"constant {node.name!r} has no tensor in the weights manifest")
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(model.weights[node.name]))
    return definition


def runner(model: GraphModel, inputs: Sequence[str], outputs: Sequence[str]):
    """run(*arrays) -> the `outputs` tensors (node names; ':0' added) for the `inputs` placeholders'
    values, the graph pruned to what they need."""
    import tensorflow as tf

    definition = graph_def(model)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(definition, name=""), [])
    tensor = (lambda name: wrapped.graph.get_tensor_by_name(name if ":" in name else f"{name}:0"))
    pruned = wrapped.prune([tensor(name) for name in inputs], [tensor(name) for name in outputs])
    return lambda *arrays: pruned(*(tf.convert_to_tensor(array) for array in arrays))
