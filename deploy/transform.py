"""Batch transform without SageMaker: every object under an input prefix -> `<key>.out`.

Objects become requests and responses become `.out` bodies as in a SageMaker transform job
(deploy/records.py: SplitType, BatchStrategy, MaxPayloadInMB, AssembleWith, Accept). The requests
are answered by the served handler in this process (deploy/invokers.py Handler: the archive's
code/inference.py overrides included), or by a running model server over HTTP (Endpoint: its
/execution-parameters fill in the options left unset). In process, a pool of threads downloads
and decodes objects; decoded images of many requests are stacked into one predict_fn call when
predict_fn is row-wise, as the server's micro-batcher does; a second pool uploads whole bodies.
Reruns skip inputs whose `.out` exists, is not empty, and was produced by the same model and options
from the input as it is now (deploy/manifest.py); the others are redone.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.answers import Answer, Failure, content_type_for
from deploy.batch_http import answers_over_http
from deploy.batch_local import answers_in_process
from deploy.invokers import Endpoint, Handler
from deploy.manifest import plan, producer_of
from deploy.records import TransformOptions
from deploy.stores import OUT_SUFFIX, Item, LocalStore, S3Store

log = logging.getLogger(__name__)

__all__ = ["Handler", "Endpoint", "TransformOptions", "TransformSummary", "Failure", "run_transform",
           "content_type_for"]


@dataclass
class TransformSummary:
    input: str
    output: str
    inputs: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    options: dict = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)   # relative input key -> output location

    def as_dict(self, with_outputs: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_outputs:
            data.pop("outputs")
        return data


def run_transform(source: S3Store | LocalStore, dest: S3Store | LocalStore, handler: Handler | Endpoint,
                  *, content_type: str | None = None, batch_size: int = 64, workers: int = 8,
                  progress: bool = True, options: TransformOptions | None = None) -> TransformSummary:
    """Transform every input in `source` not already done in `dest`; never raises per object."""
    from tqdm import tqdm

    started = time.perf_counter()
    options = options or TransformOptions(content_type=content_type,
                                          accept=getattr(handler, "accept", "application/json"))
    if isinstance(handler, Endpoint):
        handler.wait_ready()
        options = options.resolved(handler.execution_parameters())
    else:
        options = options.resolved(None)
    summary = TransformSummary(input=str(source), output=str(dest), options=asdict(options))
    todo = _pending_items(source, dest, summary, producer_of(handler, options))
    bar = tqdm(total=len(todo), unit="obj", disable=not progress, desc="transform")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transform-put") as uploads:
        writer = _Writer(uploads, dest, summary, bar, workers)
        answers = (answers_over_http(handler, source, todo, options, workers) if isinstance(handler, Endpoint)
                   else answers_in_process(handler, source, todo, options, batch_size, workers,
                                           getattr(source, "chunk", 1)))
        try:
            for answer in answers:
                summary.requests += answer.requests
                if answer.failure:
                    _fail(summary, answer.failure)
                    bar.update(1)
                    continue
                writer.add(answer)
            writer.finish()
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - started
    processed = summary.written + summary.failed
    summary.images_per_second = processed / summary.seconds if summary.seconds else 0.0
    log.info("transform %s -> %s: %d written, %d skipped, %d failed, %.1f objects/s",
             source, dest, summary.written, summary.skipped, summary.failed, summary.images_per_second)
    return summary


class _Writer:
    """Answers written to `<key>.out` on the upload pool, in jobs of the store's `chunk` answers,
    at most about 4 x workers answers behind; each outcome counted in the summary."""

    def __init__(self, pool: ThreadPoolExecutor, dest, summary: TransformSummary, bar, workers: int) -> None:
        self.pool, self.dest, self.summary, self.bar = pool, dest, summary, bar
        self.chunk = getattr(dest, "chunk", 1)
        self.limit = max(1, workers * 4 // self.chunk)
        self.jobs: deque[Future[list]] = deque()
        self.batch: list[tuple[str, bytes, str]] = []

    def add(self, answer: Answer) -> None:
        self.batch.append((answer.item.relative, answer.body, answer.media))
        if len(self.batch) >= self.chunk:
            self._submit()
            self._drain(self.limit)

    def finish(self) -> None:
        if self.batch:
            self._submit()
        self._drain(0)

    def _submit(self) -> None:
        self.jobs.append(self.pool.submit(_write_all, self.dest, self.batch))
        self.batch = []

    def _drain(self, limit: int) -> None:
        while len(self.jobs) > limit:
            for relative, error in self.jobs.popleft().result():
                if error is None:
                    self.summary.written += 1
                    self.summary.outputs[relative] = self.dest.location(relative + OUT_SUFFIX)
                else:
                    _fail(self.summary, Failure(relative, "write", error))
                self.bar.update(1)


def _write_all(dest, batch: list[tuple[str, bytes, str]]) -> list[tuple[str, str | None]]:
    """Write each answer to `<key>.out`: (relative key, None, or the error that stopped it)."""
    results = []
    for relative, body, media in batch:
        try:
            dest.write(relative + OUT_SUFFIX, body, media)
            results.append((relative, None))
        except Exception as exc:  # noqa: BLE001 - one failed write must not stop the rest
            results.append((relative, str(exc)))
    return results


def _pending_items(source, dest, summary: TransformSummary, producer: dict) -> list[Item]:
    items, todo = plan(source, dest, producer)
    summary.inputs = len(items)
    summary.skipped = len(items) - len(todo)
    pending_keys = {i.relative for i in todo}
    for item in items:
        if item.relative not in pending_keys:
            summary.outputs[item.relative] = dest.location(item.relative + OUT_SUFFIX)
    if summary.skipped:
        log.info("%d of %d inputs already have complete outputs: skipping them", summary.skipped, len(items))
    return todo


def _fail(summary: TransformSummary, failure: Failure) -> None:
    summary.failed += 1
    summary.failures.append(failure)
    log.warning("%s failed at %s: %s", failure.key, failure.stage, failure.error)
