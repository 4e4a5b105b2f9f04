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


def test_json_members_match_by_a_real_prefix_strip(tmp_path):
    path = _archive(tmp_path / "m.tar.gz", [_file(".config.json", b'{"wrong": 1}'),
                                            _file("././config.json", b'{"right": 1}')])
    assert archives.read_json_member(path, "config.json") == {"right": 1}
    dotted = _archive(tmp_path / "d.tar.gz", [_file(".metrics.json", b'{"wrong": 1}')])
    assert archives.read_json_member(dotted, "metrics.json") is None


def test_a_json_member_outside_the_archive_is_refused_before_matching(tmp_path):
    path = _archive(tmp_path / "m.tar.gz", [_file("../metrics.json", b'{"test_accuracy": 1.0}')])
    with pytest.raises(archives.UnsafeMember, match=r"'\.\./metrics\.json'.*contains '\.\.'"):
        archives.read_json_member(path, "metrics.json")


def test_a_member_over_the_size_limit_is_refused_before_anything_is_written(tmp_path, filter_flag, monkeypatch):
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)
    bomb = _archive(tmp_path / "bomb.tar.gz", [_file("labels.json"), _file("1/variables/data", b"\0" * 5000)])
    with pytest.raises(UnsafeArchiveError, match=r"'1/variables/data' is 5000 bytes.*limit of 1000 bytes"):
        extract_archive(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))
    with pytest.raises(archives.UnsafeMember, match="limit"):
        archives.read_json_member(_archive(tmp_path / "j.tar.gz", [_file("metrics.json", b"1" * 2000)]),
                                  "metrics.json")


def test_the_member_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONVLAB_ARCHIVE_MEMBER_LIMIT", "12345")
    assert archives.member_limit() == 12345
    monkeypatch.setenv("CONVLAB_ARCHIVE_MEMBER_LIMIT", "lots")
    with pytest.raises(ValueError, match="CONVLAB_ARCHIVE_MEMBER_LIMIT.*'lots'.*bytes"):
        archives.member_limit()


def test_extraction_clears_setuid_bits_and_drops_the_archives_owners(tmp_path, filter_flag):
    info, data = _file("code/run.sh", b"#!/bin/sh\n")
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o6777, 4321, 4321, "someone", "someone"
    folder = tarfile.TarInfo("code")
    folder.type, folder.mode, folder.uid, folder.gid = tarfile.DIRTYPE, 0o7777, 4321, 4321
    out = extract_archive(_archive(tmp_path / "m.tar.gz", [(folder, b""), (info, data)]), tmp_path / "out")
    mode = (out / "code" / "run.sh").stat().st_mode & 0o7777
    assert mode & 0o6000 == 0 and mode & 0o022 == 0, oct(mode)
    assert (out / "code").stat().st_mode & 0o7022 == 0
    import os
    for path in (out / "code", out / "code" / "run.sh"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid())


def test_a_link_already_in_the_destination_cannot_lead_outside(tmp_path, filter_flag):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "code").symlink_to(outside)
    (dest / "labels.json").symlink_to(outside / "labels.json")
    for member in ("code/inference.py", "labels.json"):
        bad = _archive(tmp_path / "m.tar.gz", [_file(member, b"print('owned')")])
        with pytest.raises(UnsafeArchiveError, match="outside"):
            extract_archive(bad, dest)
    assert not list(outside.iterdir())


def test_the_no_filter_path_is_taken_when_tarfile_has_no_data_filter(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", hasattr(tarfile, "data_filter"))
    calls = []
    real = tarfile.TarFile.extractall

    def recording(self, *args, **kwargs):
        calls.append(kwargs.get("filter"))
        if "filter" in kwargs:
            raise TypeError("extractall() got an unexpected keyword argument 'filter'")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(tarfile.TarFile, "extractall", recording)
    info, data = _file("labels.json", b'["a"]')
    info.mode = 0o6777
    out = extract_archive(_archive(tmp_path / "m.tar.gz", [(info, data)]), tmp_path / "out")
    assert calls == [None] and (out / "labels.json").stat().st_mode & 0o6022 == 0


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_an_atomic_write_gets_the_mode_the_umask_gives(tmp_path, umask):
    import os
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "model.tar.gz", prefix="model.tar.gz.partial-") as stream:
            stream.write(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.tar.gz").stat().st_mode & 0o777 == 0o666 & ~umask
