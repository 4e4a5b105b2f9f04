"""What produced each `.out` of a batch transform: a manifest beside the outputs.

`<output>/.convlab-transform.json` holds the producers (the model's digest, the content type,
Accept and the split options: whatever changes an answer) and, for every input key, the producer
that answers it and the input's tag (an S3 ETag, a local file's size and nanosecond mtime). A
rerun keeps an output only when it exists, is not empty, and its entry names this run's producer
and the input as it is now; every other output is redone. No clock is compared, so S3's
one-second times cannot make a replaced input look done.

The manifest is written before the first output, naming this run's producer for every input it
is about to answer, and outputs of another producer are deleted first: an interrupted run leaves
only outputs the manifest describes truly, and the identical rerun redoes only what is missing.

Inputs and outputs may share a folder, or one hold the other: an object is an output when it is
where this transform writes the answer for an input the manifest records or the listing holds
(`<output>/<key>.out`), or is the manifest itself. Every other object is an input, whatever its name.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import TransformError
from deploy.records import TransformOptions
from deploy.stores import OUT_SUFFIX, Item, LocalStore, S3Store, completed_outputs

log = logging.getLogger(__name__)

MANIFEST = ".convlab-transform.json"
VERSION = 1


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file under `folder`: its path below the folder and its bytes."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def producer_of(handler: Any, options: TransformOptions) -> dict[str, Any]:
    """What answers this run's requests and how: everything that changes an output's bytes. A model
    in this process is known by the digest of its model_dir (code/ included); a model server
    reached over HTTP only by its URL, so another model behind the same URL is not noticed."""
    model_dir = getattr(handler, "model_dir", None)
    model = f"sha256:{folder_digest(model_dir)}" if model_dir else f"endpoint {getattr(handler, 'url', handler)}"
    line = options.split_type == "Line"
    return {"model": model, "content_type": options.content_type, "accept": options.accept,
            "split_type": options.split_type, "assemble_with": options.assemble_with,
            "batch_strategy": options.batch_strategy if line else None,
            "max_payload_mb": options.max_payload_mb if line else None}


def producer_id(producer: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(producer, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Manifest:
    producers: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)  # input key -> {"producer", "input"}

    @classmethod
    def load(cls, dest: S3Store | LocalStore) -> "Manifest":
        try:
            body = dest.read(MANIFEST)
        except Exception as exc:  # noqa: BLE001 - absent (first run) or unreadable: no output is known
            if not _missing(exc):
                raise TransformError(f"cannot read {dest.location(MANIFEST)}: {exc}") from None
            return cls()
        try:
            data = json.loads(body)
            return cls(dict(data["producers"]), dict(data["outputs"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s is not a transform manifest (%s): every output there is redone",
                        dest.location(MANIFEST), exc)
            return cls()

    def save(self, dest: S3Store | LocalStore) -> None:
        used = {entry["producer"] for entry in self.outputs.values()}
        body = json.dumps({"version": VERSION, "producers": {k: v for k, v in self.producers.items() if k in used},
                           "outputs": self.outputs}, sort_keys=True).encode()
        dest.write(MANIFEST, body, "application/json")


def _missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound")  # a missing bucket is named by the listing


def input_tag(item: Item) -> str:
    return item.tag or f"{item.size}-{item.modified!r}"


def _place(store: S3Store | LocalStore, relative: str) -> str:
    location = store.location(relative)
    return location if isinstance(store, S3Store) else os.path.abspath(location)


def split_inputs(listed: list[Item], source, dest, manifest: Manifest) -> list[Item]:
    """The listed objects that are inputs: not this transform's outputs, nor its manifest."""
    root = _place(dest, "").rstrip("/") + "/"
    source_root = _place(source, "").rstrip("/") + "/"
    answered = set(manifest.outputs) | {item.relative for item in listed}
    inputs = []
    for item in listed:
        place = source_root + item.relative
        if place.startswith(root):
            inside = place[len(root):]
            if inside == MANIFEST or (inside.endswith(OUT_SUFFIX) and inside[:-len(OUT_SUFFIX)] in answered):
                continue
        inputs.append(item)
    return inputs


def plan(source, dest, producer: dict[str, Any]) -> tuple[list[Item], list[Item]]:
    """(inputs, inputs to answer); the manifest is updated for the run and outputs of another
    producer are deleted before it is written."""
    manifest = Manifest.load(dest)
    inputs = split_inputs(list(source.items()), source, dest, manifest)
    if not inputs:
        raise TransformError(f"no input objects under {source}")
    identity = producer_id(producer)
    present = completed_outputs(dest)
    todo, stale = [], []
    for item in inputs:
        wanted = {"producer": identity, "input": input_tag(item)}
        if manifest.outputs.get(item.relative) == wanted and item.relative in present:
            continue
        todo.append(item)
        if item.relative in present:
            stale.append(item.relative)
        manifest.outputs[item.relative] = wanted
    for relative in stale:
        dest.delete(relative + OUT_SUFFIX)
    if stale:
        log.info("%d outputs were produced by another model, options or input: redoing them", len(stale))
    if todo:
        manifest.producers[identity] = producer
        manifest.save(dest)
    return inputs, todo
