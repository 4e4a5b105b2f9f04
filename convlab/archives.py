"""Safe extraction of .tar.gz archives (model.tar.gz, a job's output.tar.gz), and reading one JSON
member out of them. Standard library only, so deploy and training's experiments both use it
(neither may import the other).

Every member is checked before anything is written: no absolute path, no `..`, no link, no device
or FIFO, nothing but plain files and folders, none larger than the member limit, and no path that
resolves outside the destination (through a link already there). Where the interpreter has
tarfile's "data" filter (Python 3.10.12+, 3.11.4+, 3.12+) extraction uses it as well; elsewhere
(Debian bookworm's 3.11.2, say) the members are extracted as the filter would leave them: no
setuid, setgid or sticky bit, no group or other write, owned by the extracting user.
"""
from __future__ import annotations

import copy
import json
import os
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

# Read once; tests turn it off to run the path taken on interpreters without the filter.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
MAX_MEMBER_BYTES = 4 << 30
LIMIT_VARIABLE = "CONVLAB_ARCHIVE_MEMBER_LIMIT"
JSON_MEMBER_BYTES = 64 << 20


class UnsafeMember(ValueError):
    """An archive member that would escape the extraction folder or is not a plain file or folder."""


def member_limit() -> int:
    """The largest member extracted, in bytes: $CONVLAB_ARCHIVE_MEMBER_LIMIT or 4 GiB."""
    raw = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not raw:
        return MAX_MEMBER_BYTES
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{LIMIT_VARIABLE}={raw!r} is not a whole number of bytes") from None


def member_path(name: str) -> str:
    """The member's name without its leading "./" prefixes ("././a/b" -> "a/b")."""
    while name.startswith("./"):
        name = name[2:]
    return name


def unsafe_reason(member: tarfile.TarInfo, limit: int | None = None) -> str | None:
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
    limit = member_limit() if limit is None else limit
    if member.size > limit:
        return (f"is {member.size} bytes, over the limit of {limit} bytes "
                f"(set {LIMIT_VARIABLE} to allow larger members)")
    return None


def safe_members(tar: tarfile.TarFile, archive: str | Path, limit: int | None = None) -> list[tarfile.TarInfo]:
    """Every member, or UnsafeMember naming the first that is not a plain file or folder inside."""
    members = tar.getmembers()
    for member in members:
        reason = unsafe_reason(member, limit)
        if reason:
            raise UnsafeMember(f"{archive}: member {member.name!r} {reason}; refusing to "
                               "extract (only plain files and folders inside the archive)")
    return members


def _check_inside(members: list[tarfile.TarInfo], dest: Path, archive: str | Path) -> None:
    """UnsafeMember when a member's path resolves outside dest (a link already in dest)."""
    root = os.path.realpath(dest)
    for member in members:
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.commonpath([target, root]) != root:
            raise UnsafeMember(f"{archive}: member {member.name!r} would be written outside "
                               f"{dest} (to {target}, through a link in the destination); refusing to extract")


def _as_data(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A copy of `member` as the data filter leaves it: mode without high bits or go-w, and the
    extracting user as owner."""
    plain = copy.copy(member)
    mode = member.mode & 0o755
    if member.isdir():
        mode = 0o755
    elif not mode & 0o100:
        mode &= ~0o111
    plain.mode = mode | (0o700 if member.isdir() else 0o600)
    plain.uid, plain.gid = os.geteuid(), os.getegid()
    plain.uname = plain.gname = ""
    return plain


def safe_extract(tar: tarfile.TarFile, dest: str | Path, archive: str | Path) -> list[tarfile.TarInfo]:
    """Check every member, then extract them all into dest; return the members."""
    members = safe_members(tar, archive)
    _check_inside(members, Path(dest), archive)
    if not HAS_DATA_FILTER:
        tar.extractall(dest, members=[_as_data(m) for m in members])
        return members
    try:
        tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeMember(f"{archive}: {exc}; refusing to extract") from exc
    return members


def read_json_member(source: str | Path | IO[bytes], name: str) -> Any | None:
    """The JSON document stored as `name` (leading "./" ignored) in a .tar.gz, or None; an archive
    with a member outside it (absolute, `..`) or a matching member over 64 MiB (or the member limit) is refused."""
    opened = tarfile.open(source, "r:gz") if isinstance(source, (str, Path)) else \
        tarfile.open(fileobj=source, mode="r:gz")
    label = source if isinstance(source, (str, Path)) else "archive"
    with opened as tar:
        members = tar.getmembers()
        for member in members:
            reason = unsafe_reason(member, limit=1 << 62)
            if reason in ("has an absolute path", "contains '..'"):
                raise UnsafeMember(f"{label}: member {member.name!r} {reason}; refusing to read it")
        for member in members:
            if member.isfile() and member_path(member.name) == name:
                reason = unsafe_reason(member, limit=min(JSON_MEMBER_BYTES, member_limit()))
                if reason:
                    raise UnsafeMember(f"{label}: member {member.name!r} {reason}; refusing to read it")
                handle = tar.extractfile(member)
                return json.loads(handle.read()) if handle else None
    return None
