"""What the try-it page of `convlab serve` shows of a CNN, written at training time so that any
server can show it, with or without TensorFlow:

    explain.json   {"blocks": [{"name": "block1_pool", "shape": [14, 14, 16]}, ...],
                    "filters": {"layer": "block1_conv1", "shape": [k, k, C, F], "weights": [...]}}
    explain.onnx   input `images` (as model.onnx), one output per conv block named as in "blocks":
                   the feature maps after that block

model.onnx and the SavedModel in 1/ are not touched. An MLP gets {"blocks": []} and no explain.onnx.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .onnx_export import INPUT_NAME, convert_saved_model, recorded_digest

log = logging.getLogger("convlab.onnx")

EXPLAIN_JSON = "explain.json"
EXPLAIN_ONNX = "explain.onnx"
FIRST_CONV = "block1_conv1"


def block_ends(model) -> list[str]:
    """Name of the layer that ends each conv block (its pooling, else its last ReLU)."""
    names = [layer.name for layer in model.layers]
    blocks = sorted({int(n[5:].split("_")[0]) for n in names if n.startswith("block") and "_" in n})
    ends = []
    for block in blocks:
        members = [n for n in names if n.startswith(f"block{block}_")]
        pooled = f"block{block}_pool"
        relus = [n for n in members if "_relu" in n]
        ends.append(pooled if pooled in members else (relus or members)[-1])
    return ends


def explain_document(model) -> dict:
    ends = block_ends(model)
    document = {"blocks": [{"name": name, "shape": [int(d) for d in model.get_layer(name).output.shape[1:]]}
                           for name in ends]}
    if ends:
        kernel = np.asarray(model.get_layer(FIRST_CONV).kernel, dtype=np.float64)
        document["filters"] = {"layer": FIRST_CONV, "shape": list(kernel.shape),
                               "weights": np.round(kernel, 6).tolist()}
    return document


def _probe_saved_model(model, ends: list[str], path: Path) -> None:
    """A SavedModel whose serving_default maps `images` to the output of every conv block."""
    import keras
    import tensorflow as tf

    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in ends])
    archive = keras.export.ExportArchive()
    archive.track(probe)

    def serve(images):
        outputs = probe(images, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(ends, outputs))

    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)


def export_explain(model, model_dir, onnx: bool = True) -> Path | None:
    """Write explain.json, and explain.onnx when `onnx` and the model has conv blocks; returns the
    ONNX path or None. A failure is logged, never raised: the trained model is already complete."""
    model_dir = Path(model_dir)
    try:
        document = explain_document(model)
        (model_dir / EXPLAIN_JSON).write_text(json.dumps(document), encoding="utf-8")
        ends = [block["name"] for block in document["blocks"]]
        if not (onnx and ends):
            return None
        scratch = Path(tempfile.mkdtemp(prefix=".explain-", dir=model_dir))
        try:
            _probe_saved_model(model, ends, scratch / "1")
            return convert_saved_model(scratch / "1", model_dir / EXPLAIN_ONNX, ends, digest=recorded_digest(model_dir))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except Exception:  # noqa: BLE001 - the page is optional; the model is not
        log.exception("%s: could not export the conv blocks for the try-it page", model_dir)
        return None
