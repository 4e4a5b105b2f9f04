"""Batch transform without SageMaker: every object under an input prefix -> `<key>.out`.

The serving handler runs in this process (inference.handler: model_fn, input_fn, predict_fn,
output_fn), so each `.out` holds exactly the body the server would answer for that object.
A pool of threads downloads and decodes objects; decoded images are stacked into batches for
one predict_fn call; output_fn encodes each image's row; a second pool uploads whole bodies.
Reruns skip inputs whose `.out` exists, is not empty and is newer than the input.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from deploy.errors import TransformError
from deploy.stores import OUT_SUFFIX, Item, LocalStore, S3Store, completed_outputs
from inference.batching import split_prediction

log = logging.getLogger(__name__)

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".npy": "application/x-npy", ".json": "application/json", ".csv": "text/csv"}
DEFAULT_CONTENT_TYPE = "application/x-image"


def content_type_for(relative: str, forced: str | None = None) -> str:
    return forced or CONTENT_TYPES.get(PurePosixPath(relative).suffix.lower(), DEFAULT_CONTENT_TYPE)


@dataclass
class Failure:
    key: str
    stage: str          # read | decode | predict | encode | write
    error: str
    status: int | None = None


@dataclass
class TransformSummary:
    input: str
    output: str
    inputs: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)   # relative input key -> output location

    def as_dict(self, with_outputs: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_outputs:
            data.pop("outputs")
        return data


class Handler:
    """The serving handler's four functions around a loaded model."""

    def __init__(self, model_dir: str | Path, accept: str = "application/json") -> None:
        try:
            from inference import handler
        except ImportError as exc:
            raise TransformError(f"local transform needs the inference package: {exc}") from exc
        self.module = handler
        self.accept = accept
        self.model = handler.model_fn(str(model_dir))

    def decode(self, body: bytes, content_type: str) -> np.ndarray:
        return np.asarray(self.module.input_fn(body, content_type))

    def predict(self, batch: np.ndarray) -> Any:
        return self.module.predict_fn(batch, self.model)

    def encode(self, prediction: Any) -> tuple[bytes, str]:
        body, content_type = self.module.output_fn(prediction, self.accept)
        return (body.encode() if isinstance(body, str) else bytes(body)), content_type


def _as_batch(decoded: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """One array from decoded inputs; returns the row count each input contributed."""
    rows = [a if a.ndim == 4 else a[np.newaxis] for a in decoded]
    return np.concatenate(rows, axis=0), [len(r) for r in rows]


@dataclass
class _Decoded:
    item: Item
    array: np.ndarray | None = None
    failure: Failure | None = None


def run_transform(source: S3Store | LocalStore, dest: S3Store | LocalStore, handler: Handler,
                  *, content_type: str | None = None, batch_size: int = 64, workers: int = 8,
                  progress: bool = True) -> TransformSummary:
    """Transform every input in `source` not already done in `dest`; never raises per object."""
    from tqdm import tqdm

    started = time.perf_counter()
    summary = TransformSummary(input=str(source), output=str(dest))
    done = completed_outputs(dest)
    items = [i for i in source.items() if not _is_output(source, dest, i)]
    if not items:
        raise TransformError(f"no input objects under {source}")
    summary.inputs = len(items)
    todo = [i for i in items if not (i.relative in done and done[i.relative] >= i.modified)]
    summary.skipped = len(items) - len(todo)
    pending_keys = {i.relative for i in todo}
    for item in items:
        if item.relative not in pending_keys:
            summary.outputs[item.relative] = dest.location(item.relative + OUT_SUFFIX)
    if summary.skipped:
        log.info("%d of %d inputs already have complete outputs: skipping them", summary.skipped, len(items))

    def fetch(item: Item) -> _Decoded:
        try:
            body = source.read(item.relative)
        except Exception as exc:  # noqa: BLE001 - one unreadable object must not stop the rest
            return _Decoded(item, failure=Failure(item.relative, "read", str(exc)))
        try:
            return _Decoded(item, handler.decode(body, content_type_for(item.relative, content_type)))
        except Exception as exc:  # noqa: BLE001 - recorded per object, with the handler's status
            return _Decoded(item, failure=Failure(item.relative, "decode", _describe(exc),
                                                  getattr(exc, "status", None)))

    def put(relative: str, body: bytes, body_type: str) -> None:
        dest.write(relative + OUT_SUFFIX, body, body_type)

    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="transform")
    writes: deque[tuple[str, Future[None]]] = deque()

    def drain(limit: int) -> None:
        while len(writes) > limit:
            relative, future = writes.popleft()
            try:
                future.result()
                summary.written += 1
                summary.outputs[relative] = dest.location(relative + OUT_SUFFIX)
            except Exception as exc:  # noqa: BLE001
                _fail(summary, Failure(relative, "write", str(exc)))
            bar.update(1)

    def flush(batch: list[_Decoded], uploads: ThreadPoolExecutor) -> None:
        for relative, body, body_type, failure in _infer(handler, batch):
            if failure:
                _fail(summary, failure)
                bar.update(1)
            else:
                writes.append((relative, uploads.submit(put, relative, body, body_type)))
        drain(workers * 4)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transform-get") as pool, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transform-put") as uploads:
        pending: deque[Future[_Decoded]] = deque()
        queue = iter(todo)
        batch: list[_Decoded] = []
        window = max(batch_size * 2, workers * 2)
        try:
            for item in _take(queue, window):
                pending.append(pool.submit(fetch, item))
            while pending:
                decoded = pending.popleft().result()
                for item in _take(queue, 1):
                    pending.append(pool.submit(fetch, item))
                if decoded.failure:
                    _fail(summary, decoded.failure)
                    bar.update(1)
                    continue
                batch.append(decoded)
                if len(batch) >= batch_size:
                    flush(batch, uploads)
                    batch = []
            if batch:
                flush(batch, uploads)
            drain(0)
        finally:
            for future in pending:
                future.cancel()
            bar.close()
    summary.seconds = time.perf_counter() - started
    processed = summary.written + summary.failed
    summary.images_per_second = processed / summary.seconds if summary.seconds else 0.0
    log.info("transform %s -> %s: %d written, %d skipped, %d failed, %.1f images/s",
             source, dest, summary.written, summary.skipped, summary.failed, summary.images_per_second)
    return summary


def _infer(handler: Handler, batch: list[_Decoded]) -> Iterable[tuple[str, bytes, str, Failure | None]]:
    """(relative key, body, content type, failure) per input; a failing batch is retried singly."""
    try:
        stacked, counts = _as_batch([d.array for d in batch if d.array is not None])
        prediction = handler.predict(stacked)
    except Exception as exc:  # noqa: BLE001 - isolate the input that breaks the batch
        if len(batch) == 1:
            item = batch[0].item
            yield item.relative, b"", "", Failure(item.relative, "predict", _describe(exc),
                                                  getattr(exc, "status", None))
            return
        log.warning("batch prediction failed (%s); predicting its %d inputs one by one", exc, len(batch))
        for decoded in batch:
            yield from _infer(handler, [decoded])
        return
    start = 0
    for decoded, count in zip(batch, counts):
        relative = decoded.item.relative
        try:
            rows = split_prediction(prediction, start, start + count, len(stacked))
            body, body_type = handler.encode(rows)
            yield relative, body, body_type, None
        except Exception as exc:  # noqa: BLE001
            yield relative, b"", "", Failure(relative, "encode", _describe(exc), getattr(exc, "status", None))
        start += count


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _fail(summary: TransformSummary, failure: Failure) -> None:
    summary.failed += 1
    summary.failures.append(failure)
    log.warning("%s failed at %s: %s", failure.key, failure.stage, failure.error)


def _take(queue: Iterable[Item], n: int) -> list[Item]:
    taken = []
    for item in queue:
        taken.append(item)
        if len(taken) >= n:
            break
    return taken


def _is_output(source: S3Store | LocalStore, dest: S3Store | LocalStore, item: Item) -> bool:
    """True for objects under the input location that are this transform's own outputs."""
    out = dest.location("").rstrip("/") + "/"
    if not source.location(item.relative).startswith(out):
        return False
    return item.relative.endswith(OUT_SUFFIX) or out != source.location("").rstrip("/") + "/"
