"""In-process measurements of convlab's handler, beside the HTTP benchmark.

Where one request's time goes inside convlab's handler, in this process, without HTTP: the PNG
decode (input_fn), the model at batch 1 (predict_fn on the ONNX backend) and the JSON answer
(output_fn), each the median of many calls. The serving benchmark prints these next to the server
CPU per request it measured, so what the HTTP app and the micro-batcher add is the difference."""
from __future__ import annotations

import io
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[repeats // 10:]) * 1000


def handler_stages(model_dir: Path, png_body: bytes, repeats: int = 500) -> dict:
    """Median milliseconds of input_fn, predict_fn and output_fn for one PNG image."""
    from inference import handler

    os.environ["CONVLAB_BACKEND"] = "onnx"
    model = handler.model_fn(str(model_dir))
    data = handler.input_fn(png_body, "image/png")
    prediction = handler.predict_fn(data, model)
    stages = {
        "decode": _median_ms(lambda: handler.input_fn(png_body, "image/png"), repeats),
        "predict": _median_ms(lambda: handler.predict_fn(data, model), repeats),
        "encode": _median_ms(lambda: handler.output_fn(prediction, "application/json"), repeats),
    }
    stages["handler"] = sum(stages.values())
    return stages


def handler_throughput(model_dir: Path, images: np.ndarray, rounds: int = 150) -> dict:
    """Images/s at batch 256 through input_fn -> predict_fn -> output_fn, and through the bare
    ONNX Runtime call of the same session (pixels already scaled to float32); also a session with
    ONNX Runtime's default options. The calls alternate, round after round, and each rate comes
    from the median time, so load from other processes hits all of them alike."""
    import onnxruntime as ort

    from inference import handler

    batch = np.resize(images, (256, 28, 28))
    buffer = io.BytesIO()
    np.save(buffer, batch)
    body = buffer.getvalue()
    os.environ["CONVLAB_BACKEND"] = "onnx"
    model = handler.model_fn(str(model_dir))
    default_session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    scaled = batch[..., None].astype(np.float32) / np.float32(255)
    steps = {
        "onnxruntime_default": lambda: default_session.run(None, {"images": scaled}),
        "onnxruntime": lambda: model.backend.predict(scaled),
        "handler_npy": lambda: handler.output_fn(
            handler.predict_fn(handler.input_fn(body, "application/x-npy"), model), "application/x-npy"),
        "handler_json": lambda: handler.output_fn(
            handler.predict_fn(handler.input_fn(body, "application/x-npy"), model), "application/json"),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return {name: 256 / statistics.median(values[5:]) for name, values in times.items()}
