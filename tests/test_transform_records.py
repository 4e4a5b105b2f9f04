"""The local batch transform with SageMaker's transform options, in process and against the real
server over HTTP: SplitType Line, SingleRecord / MultiRecord within MaxPayloadInMB, AssembleWith
Line, Accept, /execution-parameters, a user override, and the errors a user can make."""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from deploy import cli
from inference.local import LocalServer
from tests.fixtures_data import png_bytes

ROWS = 40


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = cli.main(["transform", "--local", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


@pytest.fixture(scope="module")
def inputs(fashion_test_images, tmp_path_factory) -> Path:
    """lines/rows.csv (one image per line), lines/records.jsonl (one {"image": b64} per line), two PNGs."""
    images = fashion_test_images[0][:ROWS]
    folder = tmp_path_factory.mktemp("records-in")
    (folder / "lines").mkdir()
    (folder / "lines" / "rows.csv").write_text("\n".join(",".join(map(str, image.ravel())) for image in images) + "\n")
    (folder / "lines" / "records.jsonl").write_text(
        "\n".join(json.dumps({"image": base64.b64encode(png_bytes(image)).decode()}) for image in images[:10]) + "\n")
    for index in range(2):
        (folder / f"single-{index}.png").write_bytes(png_bytes(images[index]))
    return folder


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_line_split_single_and_multi_record_give_one_line_per_input_line(model_dir_copy, inputs, tmp_path, capsys):
    results = {}
    for strategy, accept in (("SingleRecord", "text/csv"), ("MultiRecord", "text/csv"),
                             ("MultiRecord", "application/jsonlines")):
        out = tmp_path / f"{strategy}-{accept.replace('/', '-')}"
        code, summary, err = run(capsys, "--model-dir", str(model_dir_copy), "--input", str(inputs / "lines"),
                                 "--output", str(out), "--split-type", "Line", "--batch-strategy", strategy,
                                 "--assemble-with", "Line", "--accept", accept, "--max-payload-mb", "0.02")
        assert code == 0, err
        results[(strategy, accept)] = (summary, out)
    single, _ = results[("SingleRecord", "text/csv")]
    multi, _ = results[("MultiRecord", "text/csv")]
    assert single["requests"] == ROWS + 10
    # 0.02 MB holds a few CSV rows (~2.2 kB each) per request: more than one request, far fewer than rows.
    assert 2 < multi["requests"] < ROWS
    csv_single = lines(results[("SingleRecord", "text/csv")][1] / "rows.csv.out")
    csv_multi = lines(results[("MultiRecord", "text/csv")][1] / "rows.csv.out")
    assert len(csv_single) == ROWS and csv_multi == csv_single  # same rows, in order, however packed
    jsonl = [json.loads(line) for line in lines(results[("MultiRecord", "application/jsonlines")][1] / "rows.csv.out")]
    assert [record["predictions"][0]["class_index"] for record in jsonl] == [int(row.split(",")[1]) for row in csv_single]
    records_out = lines(results[("MultiRecord", "application/jsonlines")][1] / "records.jsonl.out")
    assert len(records_out) == 10
    assert [json.loads(line)["predictions"][0]["label"] for line in records_out] == \
        [row.split(",")[0] for row in csv_single[:10]]


def test_split_none_sends_whole_objects_and_refuses_one_over_the_payload_limit(model_dir_copy, inputs, tmp_path,
                                                                              capsys):
    code, summary, err = run(capsys, "--model-dir", str(model_dir_copy), "--input", str(inputs),
                             "--output", str(tmp_path / "out"), "--max-payload-mb", "0.05")
    assert code == 1 and err.strip().splitlines()[-1].endswith(
        "1 of 4 objects failed (3 written, 0 skipped); the summary lists each failure")
    failure = summary["failures"][0]
    assert (failure["key"], failure["stage"], failure["status"]) == ("lines/rows.csv", "split", 413)
    assert "MaxPayloadInMB" in failure["error"]
    assert len(json.loads((tmp_path / "out" / "lines" / "records.jsonl.out").read_text())["predictions"]) == 10
    assert len(json.loads((tmp_path / "out" / "single-0.png.out").read_text())["predictions"]) == 1


OVERRIDE = '''
import json

from inference import handler as convlab


def output_fn(prediction, accept):
    body, media = convlab.output_fn(prediction, accept)
    if media != "application/json":
        return body, media
    document = json.loads(body)
    document["served_by"] = "user override"
    return json.dumps(document), media
'''


@pytest.fixture
def model_dir_copy(trained_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    return model_dir


def test_in_process_and_over_http_answer_alike_with_the_archives_override(model_dir_copy, inputs, tmp_path, capsys):
    (model_dir_copy / "code").mkdir(exist_ok=True)
    (model_dir_copy / "code" / "inference.py").write_text(OVERRIDE)
    common = ["--input", str(inputs / "lines"), "--split-type", "Line", "--assemble-with", "Line"]
    code, local, err = run(capsys, "--model-dir", str(model_dir_copy), "--output", str(tmp_path / "local"),
                           "--batch-strategy", "SingleRecord", *common)
    assert code == 0, err
    env = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
           "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}
    with LocalServer(model_dir_copy, env=env, log_path=tmp_path / "server.log") as server:
        code, remote, err = run(capsys, "--endpoint-url", f"http://127.0.0.1:{server.port}",
                                "--output", str(tmp_path / "http"), *common)
    assert code == 0, err
    # The strategy, concurrency and payload the server's /execution-parameters asked for.
    assert (remote["options"]["batch_strategy"], remote["options"]["max_concurrent_transforms"],
            remote["options"]["max_payload_mb"]) == ("SingleRecord", 3, 1.0)
    assert remote["requests"] == ROWS + 10
    for name in ("rows.csv.out", "records.jsonl.out"):
        here, there = lines(tmp_path / "local" / name), lines(tmp_path / "http" / name)
        assert all(json.loads(line)["served_by"] == "user override" for line in here + there)
        assert len(here) == len(there) and [json.loads(a)["predictions"][0]["label"] for a in here] == \
            [json.loads(b)["predictions"][0]["label"] for b in there]
    assert len(lines(tmp_path / "local" / "rows.csv.out")) == ROWS


def test_a_folder_that_is_not_a_model_dir_is_one_line(inputs, tmp_path, capsys):
    code, summary, err = run(capsys, "--model-dir", str(inputs), "--input", str(inputs), "--output",
                             str(tmp_path / "out"))
    assert code == 1 and summary is None
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"{inputs}: not a model_dir" in err and "labels.json" in err


def test_bad_options_are_named(model_dir_copy, inputs, tmp_path, capsys):
    code, _, err = run(capsys, "--model-dir", str(model_dir_copy), "--input", str(inputs), "--output",
                       str(tmp_path / "o"), "--max-payload-mb", "-1")
    assert code == 1 and "MaxPayloadInMB -1: expected a positive number" in err
    code, _, err = run(capsys, "--endpoint-url", "ftp://nowhere", "--input", str(inputs), "--output",
                       str(tmp_path / "o"))
    assert code == 1 and "--endpoint-url 'ftp://nowhere': expected http://HOST:PORT" in err
