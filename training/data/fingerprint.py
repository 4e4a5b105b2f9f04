"""A fingerprint of the channels a run trains on: per channel the number of files, their bytes and one
SHA-256 over every file's relative path, size and contents (hidden files, which the readers skip, left
out). A checkpoint records it, so a run never resumes on data other than the data it started with."""
from __future__ import annotations

import hashlib
from pathlib import Path


def _files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append((relative.as_posix(), path))
    return sorted(found)


def channel_fingerprint(path: str | Path) -> dict:
    """{"files": n, "bytes": total, "sha256": hex} of one channel folder (or single file)."""
    digest, total, files = hashlib.sha256(), 0, _files(Path(path))
    for relative, file in files:
        content = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                content.update(block)
        size = file.stat().st_size
        total += size
        digest.update(f"{relative}\0{size}\0{content.hexdigest()}\n".encode())
    return {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}


def fingerprint(channels: dict[str, str]) -> dict[str, dict]:
    """{channel name: channel_fingerprint} for every channel given."""
    return {name: channel_fingerprint(path) for name, path in sorted(channels.items())}


def describe_change(saved: dict | None, current: dict) -> list[str]:
    """One phrase per channel whose fingerprint differs, naming what changed."""
    if saved is None:
        return ["the checkpoint records no fingerprint of its data"]

    def said(entry: dict | None) -> str:
        if entry is None:
            return "absent"
        return f"{entry['files']} files, {entry['bytes']} bytes, sha256 {entry['sha256'][:12]}"

    return [f"channel '{name}' was {said(saved.get(name))}, now {said(current.get(name))}"
            for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]
