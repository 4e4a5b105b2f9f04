"""Where the SageMaker training contract puts things, for the three ways the entry point runs.

1. AWS's TensorFlow training container (script mode / ModelTrainer): SM_* variables, hyperparameters
   as `--name value` arguments.
2. convlab's own container (`train` program): /opt/ml/input/config/hyperparameters.json etc.
3. Locally: the same /opt/ml tree emulated under a folder (CONVLAB_OPT_ML or --opt-ml; sagemaker-training's
   SAGEMAKER_BASE_DIR is honoured too).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = "/opt/ml"
# sagemaker-training's own variable for a tree outside /opt/ml; CONVLAB_OPT_ML wins over it.
TOOLKIT_ROOT_ENV = "SAGEMAKER_BASE_DIR"


def opt_ml_root() -> Path:
    return Path(os.environ.get("CONVLAB_OPT_ML") or os.environ.get(TOOLKIT_ROOT_ENV) or DEFAULT_ROOT)


def _read_json(path: Path, default):
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def decode_hyperparameters(raw: dict, path: Path) -> dict[str, object]:
    """Values of hyperparameters.json, JSON-decoded as sagemaker-training does.

    The SageMaker SDK writes every value JSON-encoded (`"\\"cnn\\""`, `"3"`); a value that is not
    JSON (`cnn`, `64,32`, as convlab's own writer and the console leave them) stays the string it is.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of hyperparameter names to values, "
                         f"got {type(raw).__name__}")
    decoded: dict[str, object] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        decoded[name] = value
    return decoded


@dataclass
class TrainingEnv:
    """Resolved paths, channels, hosts and raw hyperparameters of one training run."""

    root: Path
    model_dir: Path
    output_data_dir: Path
    failure_file: Path
    checkpoint_dir: Path
    channels: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, object] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=lambda: ["algo-1"])
    current_host: str = "algo-1"
    num_gpus: int = 0

    @property
    def is_chief(self) -> bool:
        return is_chief(self.hosts, self.current_host)


def is_chief(hosts: list[str], current_host: str) -> bool:
    """The chief is the first host in sorted order (algo-1): the only one that writes the model and
    checkpoints. TF_CONFIG's worker 0 is that host (see tf_config and distributed.cluster_config)."""
    return current_host == sorted(hosts)[0]


def parse_cli_hyperparameters(argv: list[str]) -> dict[str, str]:
    """`--name value` and `--name=value` pairs, as SageMaker passes hyperparameters to script mode."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"command line: expected --name value pairs, got {token!r}")
        name = token[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        out[name.replace("-", "_")] = value
    return out


def resolve(argv: list[str] | None = None, root: Path | None = None) -> TrainingEnv:
    """Build the TrainingEnv from /opt/ml (or CONVLAB_OPT_ML), SM_* variables and arguments.

    Later sources win: hyperparameters.json, then SM_HPS, then the command line.
    """
    root = Path(root) if root else opt_ml_root()
    env = os.environ
    hps: dict[str, object] = {}
    hps_file = root / "input" / "config" / "hyperparameters.json"
    hps.update(decode_hyperparameters(_read_json(hps_file, {}), hps_file))
    if env.get("SM_HPS"):
        hps.update(json.loads(env["SM_HPS"]))
    cli = parse_cli_hyperparameters(list(argv or []))

    paths = {}
    for key, env_name, default in (
        ("model_dir", "SM_MODEL_DIR", root / "model"),
        ("output_data_dir", "SM_OUTPUT_DATA_DIR", root / "output" / "data"),
        ("checkpoint_dir", "SM_CHECKPOINT_DIR", root / "checkpoints"),
    ):
        value = cli.pop(key, None)
        # AWS's TF script mode passes --model_dir s3://...; the artifacts still go to SM_MODEL_DIR.
        if value is None or str(value).startswith("s3://"):
            value = env.get(env_name) or default
        paths[key] = Path(value)
    hps.pop("model_dir", None)

    channels: dict[str, str] = {}
    data_root = root / "input" / "data"
    if data_root.is_dir():
        channels.update({p.name: str(p) for p in sorted(data_root.iterdir()) if p.is_dir()})
    for name, value in env.items():
        if name.startswith("SM_CHANNEL_") and value:
            channels[name[len("SM_CHANNEL_"):].lower()] = value
    for name in ("train", "training", "test"):
        if name in cli:
            channels[name] = cli.pop(name)
    hps.update(cli)

    resource = _read_json(root / "input" / "config" / "resourceconfig.json", {})
    hosts = json.loads(env["SM_HOSTS"]) if env.get("SM_HOSTS") else resource.get("hosts", ["algo-1"])
    current = env.get("SM_CURRENT_HOST") or resource.get("current_host", hosts[0])
    return TrainingEnv(
        root=root,
        model_dir=paths["model_dir"],
        output_data_dir=paths["output_data_dir"],
        failure_file=root / "output" / "failure",
        checkpoint_dir=paths["checkpoint_dir"],
        channels=channels,
        hyperparameters=hps,
        hosts=list(hosts),
        current_host=current,
        num_gpus=int(env.get("SM_NUM_GPUS", "0") or 0),
    )


def tf_config(hosts: list[str], current_host: str, port: int = 2222) -> dict:
    """TF_CONFIG for MultiWorkerMirroredStrategy from SageMaker's host list (algo-1 is the chief)."""
    ordered = sorted(hosts)
    if current_host not in ordered:
        raise ValueError(f"SM_CURRENT_HOST {current_host!r} is not in SM_HOSTS {ordered}")
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in ordered]},
        "task": {"type": "worker", "index": ordered.index(current_host)},
    }


def configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
    metrics = logging.getLogger("convlab.metrics")
    if not metrics.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        metrics.addHandler(handler)
        metrics.propagate = False
        metrics.setLevel(logging.INFO)


def write_failure(path: Path, message: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")
    except OSError as exc:
        logging.getLogger("convlab.train").error("could not write the failure file %s: %s", path, exc)
