"""model.tar.gz: layout member by member, served by the real server once extracted, and safe
extraction that refuses malicious archives."""
from __future__ import annotations

import ast
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from deploy.errors import PackageError, UnsafeArchiveError
from deploy.package import build_archive, extract_archive, verify_archive
from tests.fixtures_data import png_bytes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archive(trained_model_dir, tmp_path_factory) -> Path:
    return build_archive(trained_model_dir, tmp_path_factory.mktemp("package") / "model.tar.gz")


def test_archive_layout_member_by_member(archive, trained_model_dir):
    model_dir = Path(trained_model_dir)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        # The SavedModel sits in its numbered folder at the top level, byte for byte.
        for path in sorted((model_dir / "1").rglob("*")):
            name = path.relative_to(model_dir).as_posix()
            assert name in members, f"{name} missing from the archive"
            if path.is_file():
                assert members[name].isfile()
                assert tar.extractfile(name).read() == path.read_bytes(), name
        for name in ("labels.json", "config.json", "metrics.json"):
            assert tar.extractfile(name).read() == (model_dir / name).read_bytes(), name
        for name in ("model.onnx", "explain.json", "explain.onnx"):  # what serving and its try-it page read
            assert tar.extractfile(name).read() == (model_dir / name).read_bytes(), name
        # code/ at the top level, never inside the version folder.
        assert members["code/inference.py"].isfile() and members["code/requirements.txt"].isfile()
        assert not [n for n in members if n.startswith("1/code")]
        handler_source = tar.extractfile("code/inference.py").read().decode()
        requirements = tar.extractfile("code/requirements.txt").read().decode()
    # Both containers' entry points are in code/inference.py.
    functions = {node.name for node in ast.parse(handler_source).body if isinstance(node, ast.FunctionDef)}
    assert {"model_fn", "input_fn", "predict_fn", "output_fn", "input_handler", "output_handler"} <= functions
    assert "numpy" in requirements and "pillow" in requirements.lower()
    assert "model.keras" not in members            # the archive carries what serving reads only
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert all(m.isfile() or m.isdir() for m in members.values())
    assert verify_archive(archive) == [m.rstrip("/") for m in members]


def test_the_archive_is_readable_by_other_users(archive):
    umask = os.umask(0)
    os.umask(umask)
    assert archive.stat().st_mode & 0o777 == 0o666 & ~umask  # 0644 under the usual umask, as tar writes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_extracted_archive_is_served_by_the_real_server(archive, tmp_path, fashion_test_images):
    model_dir = extract_archive(archive, tmp_path / "opt-ml-model")
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "inference.server", "--model-dir", str(model_dir),
                               "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping within 60 s"
            time.sleep(0.2)
        images, labels = fashion_test_images
        classes = json.loads((model_dir / "labels.json").read_text())
        correct = 0
        for image, label in zip(images[:40], labels[:40]):
            reply = httpx.post(f"{url}/invocations", content=png_bytes(image),
                               headers={"Content-Type": "image/png", "Accept": "application/json"}, timeout=30)
            assert reply.status_code == 200, reply.text
            prediction = reply.json()["predictions"][0]
            assert prediction["label"] == classes[prediction["class_index"]]
            assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-3
            correct += prediction["class_index"] == int(label)
        assert correct / 40 > 0.5, f"{correct}/40 right through the extracted archive"
    finally:
        server.terminate()
        server.wait(timeout=20)


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("labels.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"[]"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("member,reason", [
    (_member("../../evil.py"), "contains '..'"),
    (_member("code/../../evil.py"), "contains '..'"),
    (_member("/tmp/evil.py"), "absolute path"),
    (_member("code/inference.py", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_member("code/inference.py", tarfile.LNKTYPE, "../../etc/passwd"), "is a link"),
    (_member("dev/null", tarfile.CHRTYPE), "device"),
    (_member("pipe", tarfile.FIFOTYPE), "device"),
])
def test_malicious_archive_is_refused(tmp_path, member, reason):
    bad = _tar_with(tmp_path / "bad.tar.gz", member, b"print('owned')")
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_archive(bad, dest)
    assert member.name in str(caught.value) and reason in str(caught.value)
    assert not list(dest.rglob("*")), "nothing may be extracted from a refused archive"
    assert not (tmp_path.parent / "evil.py").exists()
    with pytest.raises(UnsafeArchiveError):
        verify_archive(bad)


def test_code_nested_in_the_version_folder_is_rejected(tmp_path, archive):
    nested = tmp_path / "nested.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(nested, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name.startswith("code"):
                member.name = "1/" + member.name
            dst.addfile(member, data)
    with pytest.raises(PackageError) as caught:
        verify_archive(nested)
    text = str(caught.value)
    assert "missing code/inference.py" in text and "nested in the version folder" in text


def test_incomplete_model_dir_names_what_is_missing(tmp_path, trained_model_dir):
    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("labels.json", "config.json"):
        (broken / name).write_bytes((Path(trained_model_dir) / name).read_bytes())
    with pytest.raises(PackageError) as caught:
        build_archive(broken, tmp_path / "model.tar.gz")
    assert "metrics.json" in str(caught.value) and "1/saved_model.pb" in str(caught.value)
    assert not (tmp_path / "model.tar.gz").exists()


def test_not_a_tarball_is_a_clear_error(tmp_path):
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(PackageError, match="not a readable .tar.gz"):
        verify_archive(bogus)
