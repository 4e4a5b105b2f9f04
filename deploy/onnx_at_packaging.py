"""model.onnx for a model_dir that has none: a model trained in AWS's TensorFlow training container,
where only the staged requirements are installed and tf2onnx is absent, so training skipped the export.

The SavedModel in 1/ is converted where the archive is built, when tf2onnx is installed there
(`pip install convlab[onnx]`), by the same command training uses (`python -m tf2onnx.convert
--saved-model`; converting the Keras model in process fails with Keras 3). The graph is checked to take
`images` and give `probabilities` (docs/model_dir.md). The model_dir itself is left as it is.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

OPSET = 17
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
    problem = _problem(target) if result.returncode == 0 and target.is_file() else \
        f"tf2onnx failed (exit {result.returncode}): " + "\n".join(result.stderr.strip().splitlines()[-10:])
    if problem:
        target.unlink(missing_ok=True)
        log.warning("%s; the archive serves with TensorFlow only", problem)
        return None
    return target


def _problem(path: Path) -> str | None:
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path))
    inputs, outputs = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    if inputs != ["images"] or outputs != ["probabilities"]:
        return f"{path}: converted graph has inputs {inputs} and outputs {outputs}; expected ['images'] and ['probabilities']"
    return None
