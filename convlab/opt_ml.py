"""`convlab opt-ml DIR --train DATA`: lay out a SageMaker /opt/ml tree for a training container.

    convlab opt-ml opt_ml --train /usr/share/datasets/fashion-mnist --hp epochs=3 --hp model=cnn
    scripts/docker_train.sh opt_ml             # docker run -v $PWD/opt_ml:/opt/ml convlab:latest train

DIR gets what SageMaker gives a training container:
  input/config/hyperparameters.json   every value JSON-encoded, as the SageMaker SDK writes it
  input/config/inputdataconfig.json   one entry per channel
  input/config/resourceconfig.json    current_host algo-1, hosts [algo-1]
  input/data/<channel>/               the channel's files, hard-linked (copied across file systems)
  model/ output/ checkpoints/         where the container writes
Channels are real files, not symlinks, so the tree works when mounted into a container.

The tree is laid out fresh: what an earlier layout or run left (model/, output/, checkpoints/,
channels not given now) is removed and named, so a run never resumes from another data set's
checkpoint or serves another run's model. --keep-checkpoints keeps checkpoints/ (a stopped run
then resumes, as a restarted spot job does; on other data it refuses to).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

CHANNELS = ("train", "test")


class OptMlError(ValueError):
    """A path or hyperparameter the user gave is not usable; the message names it."""


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def fill_channel(name: str, source: Path, target: Path) -> int:
    """Hard-link (or copy) every file of a local channel folder, or a single file, into target."""
    if not source.exists():
        raise OptMlError(f"--{name} {source}: no such file or folder")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise OptMlError(f"--{name} {source}: the folder holds no files")
    for path in files:
        relative = Path(path.name) if source.is_file() else path.relative_to(source)
        link_or_copy(path, target / relative)
    return len(files)


def parse_hp(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise OptMlError(f"--hp {pair!r}: expected name=value, like --hp epochs=3")
        out[name.strip()] = value
    return out


def sagemaker_value(value: str) -> str:
    """The SageMaker SDK JSON-encodes every hyperparameter value: 3 -> "3", cnn -> "\\"cnn\\""."""
    try:
        json.loads(value)
        return value  # already a JSON literal: a number, true/false, or a quoted string
    except json.JSONDecodeError:
        return json.dumps(value)


def _count(path: Path) -> str:
    files = sum(1 for p in path.rglob("*") if p.is_file())
    return f"{path.name}/ ({files} file{'s' if files != 1 else ''})"


def clear_previous(root: Path, channels: dict[str, Path], keep_checkpoints: bool) -> tuple[list[str], list[str]]:
    """Remove what an earlier layout or run left in root; return (removed, kept), each entry named."""
    removed, kept = [], []
    stale = [root / "model", root / "output"]
    data = root / "input" / "data"
    if data.is_dir():
        stale += [p for p in sorted(data.iterdir()) if p.name not in channels]
    checkpoints = root / "checkpoints"
    if keep_checkpoints:
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            kept.append(_count(checkpoints))
    else:
        stale.append(checkpoints)
    for path in stale:
        if path.is_dir() and any(path.rglob("*")):
            removed.append(_count(path) if path.parent != data else f"input/data/{_count(path)}")
        if path.is_dir() or path.is_file():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return removed, kept


def write_opt_ml(root: Path, channels: dict[str, Path], hyperparameters: dict[str, str],
                 hosts: list[str] | None = None, current_host: str = "algo-1",
                 keep_checkpoints: bool = False, report: dict | None = None) -> dict[str, int]:
    """Lay out root as /opt/ml, fresh (clear_previous); return the number of files in each channel.
    `report`, when given, gets "removed" and "kept": what was cleared away and what was kept."""
    hosts = hosts or ["algo-1"]
    for name, source in channels.items():
        if not Path(source).exists():
            raise OptMlError(f"--{name} {source}: no such file or folder")
    removed, kept = clear_previous(root, channels, keep_checkpoints)
    if report is not None:
        report.update(removed=removed, kept=kept)
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    counts = {name: fill_channel(name, Path(source).resolve(), root / "input" / "data" / name)
              for name, source in channels.items()}
    documents = {
        "hyperparameters.json": {k: sagemaker_value(str(v)) for k, v in hyperparameters.items()},
        "inputdataconfig.json": {name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                                        "RecordWrapperType": "None"} for name in channels},
        "resourceconfig.json": {"current_host": current_host, "hosts": hosts,
                                "network_interface_name": "eth0"},
    }
    for name, document in documents.items():
        (config / name).write_text(json.dumps(document, indent=2) + "\n")
    for sub in ("model", "output/data", "checkpoints"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "output" / "failure").unlink(missing_ok=True)
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convlab opt-ml", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="the folder to lay out as /opt/ml (created if missing)")
    p.add_argument("--train", type=Path, required=True, help="training data: a folder or a file")
    p.add_argument("--test", type=Path, help="test data: a folder or a file (optional)")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable), e.g. --hp epochs=3 --hp model=cnn")
    p.add_argument("--hyperparameters", type=Path, help="a JSON file of hyperparameters (--hp wins)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep DIR/checkpoints/ so the next run resumes from them (default: a fresh tree)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        hyperparameters: dict[str, str] = {}
        if args.hyperparameters:
            try:
                document = json.loads(args.hyperparameters.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OptMlError(f"--hyperparameters {args.hyperparameters}: {exc}") from None
            if not isinstance(document, dict):
                raise OptMlError(f"--hyperparameters {args.hyperparameters}: expected a JSON object")
            hyperparameters.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in document.items()})
        hyperparameters.update(parse_hp(args.hp))
        channels = {name: getattr(args, name) for name in CHANNELS if getattr(args, name)}
        report: dict = {}
        counts = write_opt_ml(args.dir.resolve(), channels, hyperparameters,
                              keep_checkpoints=args.keep_checkpoints, report=report)
    except (OptMlError, OSError) as exc:
        print(f"convlab opt-ml: {exc}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{name}: {n} file{'s' if n != 1 else ''}" for name, n in counts.items())
    print(f"{args.dir}: /opt/ml laid out ({summary}; {len(hyperparameters)} hyperparameters)")
    if report["removed"]:
        print(f"removed what an earlier layout or run left: {', '.join(report['removed'])}")
    if report["kept"]:
        print(f"kept {', '.join(report['kept'])}: the next run resumes from them if its data and "
              "hyperparameters match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
