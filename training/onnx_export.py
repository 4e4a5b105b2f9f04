"""Convert a model_dir's SavedModel (`1/`) to `model.onnx` for ONNX Runtime serving.

tf2onnx runs in a subprocess on the exported SavedModel (`python -m tf2onnx.convert
--saved-model`): converting the Keras model in process (`tf2onnx.convert.from_keras`) fails with
Keras 3. Only the standard library is used here, so this module works wherever training runs;
without tf2onnx the SavedModel serves alone and no model.onnx is written.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("convlab.onnx")

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
TIMEOUT_SECONDS = 900
DIGEST_KEY = "weights_sha256"  # in config.json
DIGEST_METADATA = "convlab_weights_sha256"  # in the ONNX files' metadata


def tf2onnx_available() -> bool:
    return importlib.util.find_spec("tf2onnx") is not None


def export_onnx(model_dir, opset: int = OPSET) -> Path | None:
    """Write <model_dir>/model.onnx from <model_dir>/1 (signature serving_default).

    Returns the path, or None (with a warning) when tf2onnx is not installed or the conversion
    fails: the SavedModel still serves, so a finished training run is never lost to the converter.
    """
    model_dir = Path(model_dir)
    saved_model = model_dir / "1"
    if not (saved_model / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{saved_model}: no saved_model.pb; expected the SavedModel that "
                                "training exports to <model_dir>/1 (see docs/model_dir.md)")
    return convert_saved_model(saved_model, model_dir / "model.onnx", [OUTPUT_NAME], opset,
                               digest=recorded_digest(model_dir))


def recorded_digest(model_dir: Path) -> str | None:
    """The weights' sha256 that config.json records, or None."""
    try:
        return json.loads((Path(model_dir) / "config.json").read_text()).get(DIGEST_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def convert_saved_model(saved_model: Path, target: Path, outputs: list[str], opset: int = OPSET,
                        digest: str | None = None) -> Path | None:
    """Convert the serving_default signature of `saved_model` to `target` (input `images`, the given
    outputs, in any order), with `digest` (the weights' sha256) in its metadata as
    `convlab_weights_sha256`; None with a warning when tf2onnx is missing or fails."""
    if not tf2onnx_available():
        log.warning("tf2onnx is not installed: no %s written, serving will use the SavedModel "
                    "(pip install tf2onnx onnx to export it)", target.name)
        return None
    partial = target.with_name(target.name + ".partial")
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
               "--signature_def", "serving_default", "--tag", "serve", "--opset", str(opset),
               "--output", str(partial)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    log.info("converting %s to %s (opset %d)", saved_model, target.name, opset)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        log.warning("tf2onnx did not finish in %d s: no %s written", TIMEOUT_SECONDS, target.name)
        return None
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        log.warning("tf2onnx failed (exit %d): no %s written\n%s", result.returncode, target.name, tail)
        return None
    problem = _check_names(partial, outputs, digest)
    if problem:
        partial.unlink(missing_ok=True)
        log.warning("%s: no %s written", problem, target.name)
        return None
    os.replace(partial, target)
    log.info("wrote %s (%d bytes)", target, target.stat().st_size)
    return target


def _check_names(path: Path, outputs: list[str], digest: str | None = None) -> str | None:
    """The graph must take `images` and give `outputs` (docs/model_dir.md); the weights' digest is
    written into its metadata. Needs the onnx package (tf2onnx depends on it)."""
    try:
        import onnx
    except ImportError:
        return "the onnx package is not installed to check the converted graph" if digest else None
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = [i.name for i in model.graph.input]
    found = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or sorted(found) != sorted(outputs):
        return (f"{path}: converted graph has inputs {inputs} and outputs {found}; expected "
                f"[{INPUT_NAME!r}] and {outputs} from the serving_default signature")
    if digest:
        kept = [(prop.key, prop.value) for prop in model.metadata_props if prop.key != DIGEST_METADATA]
        del model.metadata_props[:]
        for key, value in [*kept, (DIGEST_METADATA, digest)]:
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
    return None
