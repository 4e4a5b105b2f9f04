"""Stratified hold-out split: per-class proportional, deterministic for a seed."""
from __future__ import annotations

import numpy as np


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept indices, held-out indices), both sorted.

    About `fraction` of every class is held out; the per-class counts are rounded so that the
    total is round(N * fraction) where the per-class bounds allow it. Every class with at least
    two samples appears in both parts; a class with one sample stays in the kept part.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split: labels have shape {labels.shape}; expected (N,)")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"stratified_split: fraction {fraction!r}; expected a number between 0 and 1")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    ideal = counts * float(fraction)
    lower = np.where(counts >= 2, 1, 0)
    upper = np.where(counts >= 2, counts - 1, 0)
    held = np.clip(np.floor(ideal).astype(np.int64), lower, upper)
    missing = int(round(len(labels) * float(fraction))) - int(held.sum())
    # bring the total to round(N * fraction): classes furthest from their share first, ties by class order
    if missing > 0:
        open_ = np.flatnonzero(held < upper)
        order = open_[np.lexsort((open_, -(ideal - held)[open_]))]
        held[order[:missing]] += 1
    elif missing < 0:
        open_ = np.flatnonzero(held > lower)
        order = open_[np.lexsort((open_, -(held - ideal)[open_]))]
        held[order[:-missing]] -= 1

    rng = np.random.default_rng(seed)
    kept_parts, held_parts = [], []
    by_class = np.argsort(inverse.reshape(-1), kind="stable")
    bounds = np.concatenate(([0], np.cumsum(counts)))
    for index in range(len(classes)):
        chosen = rng.permutation(by_class[bounds[index]: bounds[index + 1]])
        held_parts.append(chosen[: held[index]])
        kept_parts.append(chosen[held[index]:])
    kept = np.sort(np.concatenate(kept_parts)) if kept_parts else np.empty(0, dtype=np.int64)
    held_out = np.sort(np.concatenate(held_parts)) if held_parts else np.empty(0, dtype=np.int64)
    return kept.astype(np.int64), held_out.astype(np.int64)
