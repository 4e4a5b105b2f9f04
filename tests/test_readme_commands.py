"""Every shell command in README.md's code blocks, run as written on this machine.

Commands are extracted from the indented (and fenced) code blocks. Those that need an AWS account,
Docker, minutes of training or a `make` target are skipped, each for the reason given in SKIP; the
rest run in a scratch folder, in README order, with three substitutions that keep them small:
Fashion-MNIST's folder becomes a 6,000-image subset, `--epochs N` becomes `--epochs 1` and
`convlab train` gets TINY hyperparameters. Servers (LONG_RUNNING) are started, checked and stopped.

Each command runs as a shell user runs it: a fresh `bash -c` whose PATH holds no virtual environment,
where only the README's own setup step (`. .venv/bin/activate`, ACTIVATE) is done first, with `.venv`
the environment these tests run in. PYTHONPATH puts this checkout first, so `convlab` runs its code.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.local import free_port, request

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND_START = re.compile(r"^(convlab\s|python\s|scripts/\S|make\s|docker\s|\./\S)")
DATASET = "/usr/share/datasets/fashion-mnist"
ACTIVATE = re.compile(r"^ {4}(\. \.venv/bin/activate)\b", re.MULTILINE)
TINY = "--max_train_samples 600 --max_test_samples 200 --filters 8 --dense 32 --export_onnx false --verbose 0"

# (pattern, reason): the first pattern found in a command skips it.
SKIP = [
    (r"^make\s", "a make target sets up a venv and runs the whole lab or suite: far too long for one test"),
    (r"docker|--local-container", "needs Docker"),
    (r"s3://", "needs an AWS account (S3)"),
    (r"^convlab (launch|deploy deploy|deploy register)\b", "needs an AWS account (SageMaker)"),
    (r"\b(ACCOUNT|BUCKET|ROLE_ARN|MODEL_DIR)\b|\[--", "placeholders for the reader's own values"),
    (r"^scripts/predict\.sh", "needs a running server; tests/test_newcomer.py runs it against `convlab serve`"),
    (r"run_study\.py --all|make_report\.py --runs runs/full",
     "trains every study with 3 seeds (hours); tests/test_experiments.py runs studies on a subset"),
    (r"^python bench/", "benchmarks run for minutes; bench/RESULTS.md records them"),
]

# (pattern, how to start and check it): commands that serve until stopped.
LONG_RUNNING = [(r"^convlab serve\b", "http"), (r"deploy\.sandbox\b", "json-line")]


def readme_commands(text: str) -> list[str]:
    """Shell commands of the code blocks: indented 4+ spaces (or fenced), continuation lines joined,
    trailing comments dropped."""
    commands, pending, fenced = [], "", False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            pending = ""
            continue
        stripped = re.sub(r"\s+#\s.*$", "", line.strip())
        if pending:
            stripped = pending + " " + stripped
        elif not COMMAND_START.match(stripped):
            continue
        if stripped.endswith("\\"):
            pending = stripped[:-1].strip()
            continue
        pending = ""
        commands.append(stripped)
    return commands


def skip_reason(command: str) -> str | None:
    return next((reason for pattern, reason in SKIP if re.search(pattern, command)), None)


def shrink(command: str, dataset: Path) -> str:
    command = command.replace(DATASET, str(dataset))
    command = re.sub(r"--epochs\s+\d+", "--epochs 1", command)
    if re.match(r"^convlab train\b", command):
        command += " " + TINY
    return command


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_the_commands_a_newcomer_starts_with():
    """The extraction itself: a README reshuffle must not silently leave nothing to run."""
    run = [c for c in COMMANDS if skip_reason(c) is None]
    assert any(c.startswith("convlab train --local --train " + DATASET) for c in run), COMMANDS
    assert any(c.startswith("convlab serve --model-dir") for c in run), COMMANDS
    assert all(skip_reason(c) for c in COMMANDS if c.startswith(("make ", "scripts/docker_")))


def plain_path() -> str:
    """PATH of a shell where no virtual environment was activated."""
    venvs = {str(Path(sys.prefix) / "bin"), os.path.join(os.environ.get("VIRTUAL_ENV", "/nonexistent"), "bin")}
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p.rstrip("/") not in venvs)


def setup_step() -> str:
    """The README's one setup step after `make demo`, as it is written there."""
    found = ACTIVATE.search(README.read_text())
    assert found, "README.md no longer says how to put `convlab` on PATH (. .venv/bin/activate)"
    return found.group(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, fashion_subset_dir) -> dict:
    """A scratch folder laid out like the checkout (scripts/, notebooks/, bench/, docs/ and .venv linked
    in) and the environment of a plain shell: no venv on PATH, this checkout on PYTHONPATH."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests are not running in a virtual environment (make test creates .venv)")
    cwd = tmp_path_factory.mktemp("readme")
    for name in ("scripts", "notebooks", "bench", "docs"):
        (cwd / name).symlink_to(ROOT / name)
    (cwd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": plain_path(),
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)})
    return {"cwd": cwd, "env": env, "dataset": fashion_subset_dir, "setup": setup_step()}


def in_shell(command: str, ws: dict) -> list[str]:
    """bash -c with the README's setup step done first, as in a new terminal."""
    return ["bash", "-c", f"{ws['setup']} && {command}"]


def test_convlab_is_found_after_the_readme_step_and_only_then(workspace):
    """The step is needed (a plain shell has no `convlab`) and enough (it finds the venv's)."""
    if shutil.which("convlab", path=workspace["env"]["PATH"]):
        pytest.skip("a `convlab` outside the virtual environment is on this machine's PATH")
    plain = subprocess.run(["bash", "-c", "convlab --help"], cwd=workspace["cwd"], env=workspace["env"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 127 and "convlab: command not found" in plain.stderr
    done = subprocess.run(in_shell("command -v convlab python && convlab --help", workspace),
                          cwd=workspace["cwd"], env=workspace["env"], capture_output=True, text=True, timeout=60)
    found = done.stdout.split()
    assert found[:2] == [str(Path(sys.prefix) / "bin" / "convlab"), str(Path(sys.prefix) / "bin" / "python")], done
    assert "usage: convlab" in done.stdout + done.stderr


def _serve_until_checked(command: str, kind: str, ws: dict) -> None:
    port = free_port()
    if kind == "http":
        command += f" --port {port}"
    process = subprocess.Popen(in_shell("exec " + command, ws), cwd=ws["cwd"], env=ws["env"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if kind == "http":
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if request(port, "GET", "/ping", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert request(port, "GET", "/ping")[0] == 200
        else:
            first = json.loads(process.stdout.readline())
            assert first["endpoint_url"].startswith("http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGINT if kind == "json-line" else signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, f"{command} exited {code}"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command, workspace):
    reason = skip_reason(command)
    if reason:
        pytest.skip(reason)
    command = shrink(command, workspace["dataset"])
    kind = next((kind for pattern, kind in LONG_RUNNING if re.search(pattern, command)), None)
    if kind:
        _serve_until_checked(command, kind, workspace)
        return
    done = subprocess.run(in_shell(command, workspace), cwd=workspace["cwd"], env=workspace["env"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
