"""Where one request's time goes inside convlab's handler, in this process, without HTTP: the PNG
decode (input_fn), the model at batch 1 (predict_fn on the ONNX backend) and the JSON answer
(output_fn), each the median of many calls. The serving benchmark prints these next to the server
CPU per request it measured, so what the HTTP app and the micro-batcher add is the difference."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path


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
