"""One input object's way through a batch transform, whoever answers its requests: its content
type, its request bodies (deploy/records.py), the Answer that becomes its `.out` body or its
Failure, and the pool that works on objects in input order. deploy/batch_local.py (the handler in
this process) and deploy/batch_http.py (a model server over HTTP) both build on it;
deploy/transform.py drives them.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable

from deploy.invokers import RequestFailed
from deploy.records import PayloadTooLarge, TransformOptions, assemble, split_requests
from deploy.stores import Item

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".npy": "application/x-npy", ".json": "application/json", ".csv": "text/csv",
                 ".jsonl": "application/jsonlines"}
DEFAULT_CONTENT_TYPE = "application/x-image"


def content_type_for(relative: str, forced: str | None = None) -> str:
    return forced or CONTENT_TYPES.get(PurePosixPath(relative).suffix.lower(), DEFAULT_CONTENT_TYPE)


@dataclass
class Failure:
    key: str
    stage: str          # read | split | decode | predict | encode | invoke | write
    error: str
    status: int | None = None


@dataclass
class Answer:
    """One object's outcome: the `.out` body and its content type, or a failure."""

    item: Item
    body: bytes = b""
    media: str = ""
    failure: Failure | None = None
    requests: int = 0


def read_requests(source, item: Item, options: TransformOptions) -> tuple[list[bytes], str] | Failure:
    """The request bodies of one object and their content type, or the failure reading it."""
    try:
        body = source.read(item.relative)
    except Exception as exc:  # noqa: BLE001 - one unreadable object must not stop the rest
        return Failure(item.relative, "read", str(exc))
    try:
        return split_requests(body, options), content_type_for(item.relative, options.content_type)
    except PayloadTooLarge as exc:
        return Failure(item.relative, "split", str(exc), 413)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def failure_of(item: Item, stage: str, exc: BaseException) -> Failure:
    if isinstance(exc, RequestFailed):
        return Failure(item.relative, exc.stage, str(exc), exc.status)
    return Failure(item.relative, stage, describe(exc), getattr(exc, "status", None))


def in_order(pool: ThreadPoolExecutor, items: list[Item], work: Callable[[Item], Any], window: int,
             chunk: int = 1) -> Iterable:
    """work(item) for each item on the pool, in jobs of `chunk` items (a local folder's reads are
    too quick to pay for a hand-off each), at most `window` items ahead, results in input order."""
    pending: deque[Future] = deque()
    jobs = iter([items[start:start + chunk] for start in range(0, len(items), chunk)])

    def run(group: list[Item]) -> list:
        return [work(item) for item in group]

    try:
        for group in _take(jobs, max(1, window // chunk)):
            pending.append(pool.submit(run, group))
        while pending:
            results = pending.popleft().result()
            for group in _take(jobs, 1):
                pending.append(pool.submit(run, group))
            yield from results
    finally:
        for future in pending:
            future.cancel()


def assembled(item: Item, responses: list[tuple[bytes, str]], options: TransformOptions) -> Answer:
    media = responses[0][1] if responses else (options.accept or "")
    return Answer(item, assemble([body for body, _ in responses], options.assemble_with), media,
                  requests=len(responses))


def _take(queue: Iterable, n: int) -> list:
    taken = []
    for item in queue:
        taken.append(item)
        if len(taken) >= n:
            break
    return taken
