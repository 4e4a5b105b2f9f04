"""convlab.archives and convlab.atomic: safe extraction with and without tarfile's "data" filter,
and writes a reader never sees half of."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from convlab import archives
from convlab.atomic import atomic_write
from deploy.errors import UnsafeArchiveError
from deploy.package import extract_archive


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name, data=b"{}"):
    return tarfile.TarInfo(name), data


@pytest.fixture(params=[True, False], ids=["data-filter", "no-data-filter"])
def filter_flag(request, monkeypatch):
    if request.param and not hasattr(tarfile, "data_filter"):
        pytest.skip("this interpreter's tarfile has no data filter")
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", request.param)
    return request.param


def test_plain_members_are_extracted_on_both_paths(tmp_path, filter_flag):
    good = _archive(tmp_path / "good.tar.gz", [_file("labels.json", b'["a"]'), _file("code/inference.py", b"x = 1")])
    out = extract_archive(good, tmp_path / "out")
    assert json.loads((out / "labels.json").read_text()) == ["a"]
    assert (out / "code" / "inference.py").read_text() == "x = 1"


@pytest.mark.parametrize("name,kind,link,reason", [
    ("../evil.py", tarfile.REGTYPE, "", "contains '..'"),
    ("/tmp/evil.py", tarfile.REGTYPE, "", "absolute path"),
    ("code/inference.py", tarfile.SYMTYPE, "/etc/passwd", "is a link"),
    ("pipe", tarfile.FIFOTYPE, "", "device"),
])
def test_unsafe_members_are_refused_on_both_paths(tmp_path, filter_flag, name, kind, link, reason):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    bad = _archive(tmp_path / "bad.tar.gz", [_file("labels.json"), (info, b"print('owned')" if info.isfile() else b"")])
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive(bad, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*")) and not (tmp_path / "evil.py").exists()


def test_a_json_member_is_read_from_a_path_or_a_stream(tmp_path):
    path = _archive(tmp_path / "m.tar.gz", [_file("./metrics.json", b'{"test_accuracy": 0.9}')])
    assert archives.read_json_member(path, "metrics.json") == {"test_accuracy": 0.9}
    assert archives.read_json_member(io.BytesIO(path.read_bytes()), "metrics.json") == {"test_accuracy": 0.9}
    assert archives.read_json_member(path, "labels.json") is None


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as stream:
        stream.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    with atomic_write(target, "w") as stream:
        stream.write("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
