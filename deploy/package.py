"""model.tar.gz from a model_dir: one archive for convlab's container and AWS's TF Serving one.

Layout (top level of the archive):

    1/saved_model.pb, 1/variables/...   SavedModel in a numbered version folder
    model.onnx                          the model_dir's, else converted from 1/ when tf2onnx is installed
    labels.json, config.json, metrics.json (+ input.json, model_summary.json, explain.json, explain.onnx,
                                        samples/ when present)
    code/inference.py, code/requirements.txt (+ the modules the handler imports)

`code/` sits beside the version folder, never inside it (sagemaker-python-sdk#831).
"""
from __future__ import annotations

import gzip
import logging
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from convlab.archives import UnsafeMember, safe_extract, safe_members
from convlab.atomic import atomic_write
from deploy.errors import PackageError, UnsafeArchiveError
from deploy.onnx_at_packaging import export_for_archive

log = logging.getLogger(__name__)

REQUIRED_FILES = ("labels.json", "config.json", "metrics.json")
OPTIONAL_FILES = ("model.onnx", "input.json", "model_summary.json", "explain.json", "explain.onnx")
REQUIRED_CODE = ("code/inference.py", "code/requirements.txt")
VERSION_DIR = re.compile(r"^\d+$")


def version_dirs(model_dir: Path) -> list[Path]:
    return sorted((p for p in model_dir.iterdir() if p.is_dir() and VERSION_DIR.match(p.name)),
                  key=lambda p: int(p.name))


def check_model_dir(model_dir: str | Path) -> Path:
    """The model_dir as a Path, or a PackageError naming every missing member."""
    root = Path(model_dir)
    if not root.is_dir():
        raise PackageError(f"model_dir {str(root)!r} is not a folder (expected the folder training "
                           "wrote: 1/saved_model.pb, labels.json, config.json, metrics.json)")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    versions = version_dirs(root)
    if not any((v / "saved_model.pb").is_file() and (v / "variables").is_dir() for v in versions):
        missing.append("1/saved_model.pb and 1/variables/ (a SavedModel in a numbered folder)")
    if missing:
        raise PackageError(f"model_dir {str(root)!r} lacks {', '.join(missing)} (see docs/model_dir.md)")
    return root


def _write_code(staging: Path) -> None:
    """Write code/ (the handler and its modules) under `staging`."""
    try:
        from inference.code_bundle import write_code_dir
    except ImportError as exc:
        raise PackageError("packaging needs the inference package (inference.code_bundle) "
                           f"to write code/inference.py: {exc}") from exc
    write_code_dir(staging)


def _add(tar: tarfile.TarFile, path: Path, arcname: str, mtime: int) -> None:
    info = tar.gettarinfo(str(path), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    if info.isdir():
        info.mode = 0o755
        tar.addfile(info)
        for child in sorted(path.iterdir()):
            _add(tar, child, f"{arcname}/{child.name}", mtime)
    elif info.isfile():
        info.mode = 0o644
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        raise PackageError(f"{path} is neither a file nor a folder: it cannot go into model.tar.gz")


def build_archive(model_dir: str | Path, dest: str | Path | None = None, convert_onnx: bool = True) -> Path:
    """Write model.tar.gz (default: <model_dir>/../model.tar.gz), verify it, return its path. A
    model_dir without model.onnx gets one converted from 1/ into the archive unless `convert_onnx`
    is False (onnx_at_packaging.py)."""
    root = check_model_dir(model_dir)
    out = Path(dest) if dest else root.parent / "model.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    mtime = int(max(p.stat().st_mtime for p in root.iterdir()))
    with tempfile.TemporaryDirectory(prefix="convlab-code-") as tmp:
        code_dir = Path(tmp) / "code"
        _write_code(Path(tmp))
        with atomic_write(out, prefix=out.name + ".partial-") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for version in version_dirs(root):
                _add(tar, version, version.name, mtime)
            for name in REQUIRED_FILES + OPTIONAL_FILES:
                if (root / name).is_file():
                    _add(tar, root / name, name, mtime)
                elif name == "model.onnx" and convert_onnx:
                    converted = export_for_archive(version_dirs(root)[-1], Path(tmp))
                    if converted:
                        _add(tar, converted, name, mtime)
            if (root / "samples").is_dir():  # the try-it page's test images
                _add(tar, root / "samples", "samples", mtime)
            _add(tar, code_dir, "code", mtime)
    members = verify_archive(out)
    log.info("wrote %s (%d members, %.1f KiB)", out, len(members), out.stat().st_size / 1024)
    return out


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    try:
        return safe_members(tar, archive)
    except UnsafeMember as exc:
        raise UnsafeArchiveError(str(exc)) from None


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise PackageError(f"{archive} is not a readable .tar.gz: {exc}") from exc


def verify_archive(archive: str | Path) -> list[str]:
    """Member names of a model.tar.gz, or a PackageError saying what is missing or misplaced."""
    path = Path(archive)
    with _open(path) as tar:
        names = [m.name.rstrip("/") for m in _safe_members(tar, path)]
    present = set(names)
    problems = [f"missing {name}" for name in REQUIRED_FILES + REQUIRED_CODE if name not in present]
    versions = {n.split("/")[0] for n in names if VERSION_DIR.match(n.split("/")[0]) and "/" in n}
    if not any(f"{v}/saved_model.pb" in present and any(n.startswith(f"{v}/variables/") for n in names)
               for v in versions):
        problems.append("missing <version>/saved_model.pb with <version>/variables/ at the top level")
    nested = sorted(n for n in names if re.match(r"^\d+/code(/|$)", n))
    if nested:
        problems.append(f"code/ is nested in the version folder ({nested[0]}); it must sit at the top level")
    if problems:
        raise PackageError(f"{path}: {'; '.join(problems)}")
    return names


def extract_archive(archive: str | Path, dest: str | Path, clean: bool = False) -> Path:
    """Extract a model.tar.gz safely (every member checked; convlab.archives). With
    `clean`, what an earlier extraction left in dest is removed first, so no file of another
    archive (a model.onnx, a code/inference.py) is served with this one."""
    path, out = Path(archive), Path(dest)
    with _open(path) as tar:
        _safe_members(tar, path)  # refuse a bad archive before touching dest
    if clean and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with _open(path) as tar:
        try:
            safe_extract(tar, out, path)
        except UnsafeMember as exc:
            raise UnsafeArchiveError(str(exc)) from exc
    return out
