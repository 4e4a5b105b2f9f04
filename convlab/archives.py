"""Safe extraction of .tar.gz archives (model.tar.gz, a job's output.tar.gz), and reading one JSON
member out of them. Standard library only, so deploy and training's experiments both use it
(neither may import the other).

Every member is checked before anything is written: no absolute path, no `..`, no link, no device
or FIFO, nothing but plain files and folders. Where the interpreter has tarfile's "data" filter
(Python 3.10.12+, 3.11.4+, 3.12+) extraction uses it as well; elsewhere (Debian bookworm's 3.11.2,
say) the member checks alone guard it, which is what the filter would refuse for such members.
"""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

# Read once; tests turn it off to run the path taken on interpreters without the filter.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeMember(ValueError):
    """An archive member that would escape the extraction folder or is not a plain file or folder."""


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why `member` may not be extracted, or None when it is a plain file or folder inside."""
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "contains '..'"
    if member.issym() or member.islnk():
        return f"is a link (to {member.linkname!r})"
    if member.isdev():
        return "is a device or FIFO"
    if not (member.isfile() or member.isdir()):
        return "is not a plain file or folder"
    return None


def safe_members(tar: tarfile.TarFile, archive: str | Path) -> list[tarfile.TarInfo]:
    """Every member, or UnsafeMember naming the first that is not a plain file or folder inside."""
    members = tar.getmembers()
    for member in members:
        reason = unsafe_reason(member)
        if reason:
            raise UnsafeMember(f"{archive}: member {member.name!r} {reason}; refusing to "
                               "extract (only plain files and folders inside the archive)")
    return members


def safe_extract(tar: tarfile.TarFile, dest: str | Path, archive: str | Path) -> list[tarfile.TarInfo]:
    """Check every member, then extract them all into dest; return the members."""
    members = safe_members(tar, archive)
    if not HAS_DATA_FILTER:
        tar.extractall(dest, members=members)
        return members
    try:
        tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeMember(f"{archive}: {exc}; refusing to extract") from exc
    return members


def read_json_member(source: str | Path | IO[bytes], name: str) -> Any | None:
    """The JSON document stored as `name` (a leading "./" ignored) in a .tar.gz, or None."""
    opened = tarfile.open(source, "r:gz") if isinstance(source, (str, Path)) else \
        tarfile.open(fileobj=source, mode="r:gz")
    with opened as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lstrip("./") == name:
                handle = tar.extractfile(member)
                return json.loads(handle.read()) if handle else None
    return None
