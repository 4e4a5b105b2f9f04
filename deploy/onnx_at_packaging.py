"""model.onnx for a model_dir that has none: a model trained in AWS's TensorFlow training container,
where only the staged requirements are installed and tf2onnx is absent, so training skipped the export.

The SavedModel in 1/ is converted where the archive is built, when tf2onnx is installed there
(`pip install convlab[onnx]`), by the same command training uses (`python -m tf2onnx.convert
--saved-model`; converting the Keras model in process fails with Keras 3). The graph is checked to take
`images` and give `probabilities` (docs/model_dir.md) and, converted from the SavedModel config.json
describes, records that file's `weights_sha256` in its metadata as training's export does, so the
server's check that model.onnx matches the SavedModel holds. The model_dir itself is left as it is.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

OPSET = 17
DIGEST_METADATA = "convlab_weights_sha256"  # as training/onnx_export.py and inference/backends.py name it
TIMEOUT_SECONDS = 900


def export_for_archive(saved_model: Path, dest_dir: Path) -> Path | None:
    """<dest_dir>/model.onnx converted from `saved_model`, or None (with a warning) when tf2onnx is
    missing or the conversion fails: the archive then serves with TensorFlow only."""
    if importlib.util.find_spec("tf2onnx") is None:
        log.warning("%s has no model.onnx and tf2onnx is not installed here (pip install convlab[onnx]): "
                    "the archive serves with TensorFlow only", saved_model.parent)
        return None
    target = Path(dest_dir) / "model.onnx"
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--signature_def",
               "serving_default", "--tag", "serve", "--opset", str(OPSET), "--output", str(target)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    log.info("%s has no model.onnx (trained without tf2onnx): converting %s for the archive",
             saved_model.parent, saved_model)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("tf2onnx did not finish in %d s: the archive serves with TensorFlow only", TIMEOUT_SECONDS)
        return None
    problem = _problem(target, _weights_digest(saved_model.parent)) if result.returncode == 0 and target.is_file() else \
        f"tf2onnx failed (exit {result.returncode}): " + "\n".join(result.stderr.strip().splitlines()[-10:])
    if problem:
        target.unlink(missing_ok=True)
        log.warning("%s; the archive serves with TensorFlow only", problem)
        return None
    return target


def _weights_digest(model_dir: Path) -> str | None:
    """config.json's `weights_sha256`: the digest of the weights the SavedModel beside it holds."""
    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def _problem(path: Path, digest: str | None = None) -> str | None:
    try:
        import onnx
    except ImportError:
        return "the onnx package is not installed to record the weights' digest" if digest else None
    model = onnx.load(str(path))
    inputs, outputs = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    if inputs != ["images"] or outputs != ["probabilities"]:
        return f"{path}: converted graph has inputs {inputs} and outputs {outputs}; expected ['images'] and ['probabilities']"
    if digest:
        model.metadata_props.add(key=DIGEST_METADATA, value=digest)
        onnx.save(model, str(path))
    return None
