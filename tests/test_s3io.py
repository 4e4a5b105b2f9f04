"""convlab.s3io against the live moto server: more than one page of objects (1,000 per page),
listed, uploaded and downloaded on a thread pool, and unchanged files left alone."""
from __future__ import annotations

import boto3
import pytest

from convlab import s3io
from training.local import download_s3_prefix

COUNT = 1005  # more than one list_objects_v2 page
BUCKET = "transfer-bucket"


@pytest.fixture
def s3(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "files"
    for index in range(COUNT):
        path = root / f"part{index % 3}" / f"object-{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"payload {index}".encode())
    return root


def _plan(s3, folder):
    files = [(path, f"data/{path.relative_to(folder).as_posix()}") for path in sorted(folder.rglob("*.bin"))]
    return s3io.plan_uploads(s3, BUCKET, files)


def test_upload_list_and_download_more_than_one_page(s3, folder, tmp_path):
    plans = _plan(s3, folder)
    assert len(plans) == COUNT and not any(plan.present for plan in plans)
    sent = s3io.upload_files(s3, BUCKET, plans)
    assert len(sent) == COUNT

    listed = list(s3io.list_objects(s3, BUCKET, "data/"))
    assert len(listed) == COUNT
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="data/")["IsTruncated"], "one page would have been enough"

    dest = tmp_path / "copy"
    paths = s3io.download_prefix(s3, f"s3://{BUCKET}/data/", dest)
    assert len(paths) == COUNT
    assert all((dest / p.relative_to(folder)).read_bytes() == p.read_bytes() for p in folder.rglob("*.bin"))


def test_unchanged_files_are_not_sent_again(s3, folder):
    s3io.upload_files(s3, BUCKET, _plan(s3, folder))
    changed = folder / "part1" / "object-0001.bin"
    changed.write_bytes(b"another payload")

    plans = _plan(s3, folder)
    assert [plan.path for plan in plans if not plan.present] == [changed]
    sent = s3io.upload_files(s3, BUCKET, plans)
    assert [plan.key for plan in sent] == ["data/part1/object-0001.bin"]
    body = s3.get_object(Bucket=BUCKET, Key="data/part1/object-0001.bin")["Body"].read()
    assert body == b"another payload"


def test_a_multipart_object_is_recognised_by_its_stored_md5(s3, tmp_path):
    from boto3.s3.transfer import TransferConfig

    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (6 * 1024 * 1024 // 256 + 1))  # over moto's 5 MiB part minimum
    small_parts = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(big), BUCKET, "big.bin", Config=small_parts,
                   ExtraArgs={"Metadata": {s3io.MD5_METADATA: s3io.file_md5(big)}})
    etag = s3.head_object(Bucket=BUCKET, Key="big.bin")["ETag"]
    assert "-" in etag, "the object was not stored as a multipart upload"
    assert s3io.plan_uploads(s3, BUCKET, [(big, "big.bin")])[0].present


def test_training_channels_download_through_the_same_module(s3, folder, tmp_path):
    s3io.upload_files(s3, BUCKET, _plan(s3, folder))
    dest = download_s3_prefix(f"s3://{BUCKET}/data/part2", tmp_path / "channel")
    assert len(list(dest.rglob("*.bin"))) == len(list((folder / "part2").glob("*.bin")))


def test_a_key_that_would_escape_the_folder_is_refused(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="data/../../escape.bin", Body=b"x")
    with pytest.raises(ValueError, match=r"object key 'data/\.\./\.\./escape\.bin' would be written outside"):
        s3io.download_prefix(s3, f"s3://{BUCKET}/data/", tmp_path / "dest")
    assert not (tmp_path / "escape.bin").exists()


def test_planning_against_a_bucket_that_does_not_exist_yet_reads_all_as_new(aws, folder):
    plans = s3io.plan_uploads(boto3.client("s3"), "not-created-yet", [(p, p.name) for p in sorted(folder.rglob("*.bin"))[:3]])
    assert [plan.present for plan in plans] == [False, False, False]


def test_a_folder_prefix_does_not_match_its_siblings(s3, tmp_path):
    from deploy.aws import S3Uri
    from deploy.stores import S3Store

    for key in ("train/a.bin", "train/sub/b.bin", "train-old/stale.bin", "trainer.bin"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    dest = tmp_path / "channel"
    paths = s3io.download_prefix(s3, f"s3://{BUCKET}/train", dest)
    assert sorted(p.relative_to(dest).as_posix() for p in paths) == ["a.bin", "sub/b.bin"]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["a.bin", "sub/b.bin"]
    assert [o["Key"] for o in s3io.list_folder(s3, BUCKET, "train")] == ["train/a.bin", "train/sub/b.bin"]
    assert [i.relative for i in S3Store(S3Uri(BUCKET, "train"), s3).items()] == ["a.bin", "sub/b.bin"]
    # A prefix naming one object is that object, as before.
    assert [o["Key"] for o in s3io.list_folder(s3, BUCKET, "trainer.bin")] == ["trainer.bin"]
    assert [p.name for p in s3io.download_prefix(s3, f"s3://{BUCKET}/trainer.bin", tmp_path / "one")] == ["trainer.bin"]
