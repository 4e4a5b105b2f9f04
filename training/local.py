"""Local mode: the /opt/ml tree emulated under a work folder, channels from local paths or S3,
and the self-sufficient source dir that SageMaker's own TensorFlow container runs."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger("convlab.local")

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY_SCRIPT = "train.py"
# Parts of the package a training job does not need.
STAGE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "experiments", "studies", "local.py")
ENTRY_TEMPLATE = '''"""SageMaker entry point: runs convlab's training with the job's hyperparameters."""
import sys

from training.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def stage_source_dir(dest: str | Path) -> Path:
    """Write a source dir that runs in AWS's TensorFlow training container without convlab installed:
    train.py (the entry script), the training package, and requirements.txt."""
    dest = Path(dest)
    if (dest / "training").exists():
        shutil.rmtree(dest / "training")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PACKAGE_DIR, dest / "training", ignore=STAGE_IGNORE)
    (dest / ENTRY_SCRIPT).write_text(ENTRY_TEMPLATE)
    shutil.copy(PACKAGE_DIR / "requirements.txt", dest / "requirements.txt")
    return dest


def download_s3_prefix(uri: str, dest: Path) -> Path:
    """Copy every object under s3://bucket/prefix into dest, keeping the relative keys."""
    import boto3

    from convlab.s3io import download_prefix

    count = len(download_prefix(boto3.client("s3"), uri, dest))
    if count == 0:
        raise FileNotFoundError(f"channel {uri}: no objects under this S3 prefix")
    log.info("downloaded %d objects from %s", count, uri)
    return dest


def prepare_opt_ml(work_dir: str | Path, channels: dict[str, str], hyperparameters: dict) -> Path:
    """Lay out work_dir/opt_ml as SageMaker does inside a training container and return its root.

    Local channels are linked (not copied); s3:// channels are downloaded.
    """
    return prepare_tree(Path(work_dir).resolve() / "opt_ml", channels, hyperparameters)


def prepare_tree(root: str | Path, channels: dict[str, str], hyperparameters: dict) -> Path:
    """Lay out `root` as SageMaker lays out /opt/ml inside a training container, and return it."""
    root = Path(root).resolve()
    config = root / "input" / "config"
    data = root / "input" / "data"
    config.mkdir(parents=True, exist_ok=True)
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    input_config = {}
    for name, source in channels.items():
        target = data / name
        if str(source).startswith("s3://"):
            try:
                download_s3_prefix(str(source), target)
            except FileNotFoundError:
                raise
            except Exception as exc:  # botocore: credentials, missing bucket, access denied
                raise ValueError(f"channel '{name}': could not download {source}: {exc}") from None
        else:
            path = Path(source).resolve()
            if not path.exists():
                raise FileNotFoundError(f"channel '{name}': {source} does not exist")
            if path.is_dir():
                target.symlink_to(path, target_is_directory=True)
            else:  # a single file becomes a channel folder holding it
                target.mkdir()
                (target / path.name).symlink_to(path)
        input_config[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    (config / "inputdataconfig.json").write_text(json.dumps(input_config))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for sub in ("model", "output/data", "checkpoints"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    failure = root / "output" / "failure"
    if failure.exists():
        failure.unlink()
    return root
