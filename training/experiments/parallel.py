"""Train a study's runs in several worker processes, each pinned to its own CPU core.

On a small CPU machine two single-core processes train more images per second than one process
spread over both cores (bench/RESULTS.md). Runs are handed out one at a time from a queue, so a
slow configuration does not hold up the rest; each worker writes its own records, exactly as the
sequential runner does, so an interrupted study resumes the same way.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from pathlib import Path

log = logging.getLogger(__name__)


def usable_cores() -> list[int]:
    """The CPU cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _worker(core: int | None, train_one, channels: dict, runs: str, jobs, results) -> None:
    """One worker process: pinned to `core`, train runs from `jobs` with `train_one` until it is empty."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})  # before TensorFlow sizes its thread pools
    logging.basicConfig(level=logging.WARNING)
    while True:
        try:
            run = jobs.get_nowait()
        except queue.Empty:
            return
        try:
            metrics = train_one(run, channels, Path(runs))
            results.put((run.run_id, metrics["test_accuracy"], None))
        except Exception as exc:  # noqa: BLE001 - told to the parent, which stops the study
            results.put((run.run_id, None, str(exc)))
            return


def train_parallel(todo: list, channels: dict, runs: Path, workers: int, bar, train_one, after_each) -> str | None:
    """Train `todo` in `workers` processes pinned one per core, each run by `train_one(run, channels,
    runs)` (a module-level function, sent to the workers), `after_each(runs)` called after each
    recorded run; the first failed run's error, or None."""
    cores = usable_cores()
    context = multiprocessing.get_context("spawn")
    jobs, results = context.Queue(), context.Queue()
    for run in todo:
        jobs.put(run)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(cores[i % len(cores)] if len(cores) >= workers else None,
                                       train_one, channels, str(runs), jobs, results))
                 for i in range(workers)]
    for process in processes:
        process.start()
    log.info("%d worker processes on cores %s", workers, cores[:workers])
    failure = None
    try:
        for _ in todo:
            result = _next_result(results, processes)
            if result is None:
                break
            run_id, accuracy, error = result
            bar.update(1)
            bar.set_postfix_str(run_id)
            if error:
                failure = error
                break
            log.info("recorded %s: test accuracy %.4f", run_id, accuracy)
            after_each(runs)
    finally:
        for process in processes:
            if failure:
                process.terminate()
            process.join()
    return failure


def _next_result(results, processes):
    """The next finished run, or None when every worker has exited without sending one."""
    while True:
        try:
            return results.get(timeout=5)
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                try:
                    return results.get_nowait()
                except queue.Empty:
                    return None
