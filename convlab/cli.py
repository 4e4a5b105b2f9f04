"""`convlab <command>`: one front door to the training, serving, deploy and report programs.

Each command imports only its own part of the project, so serving never loads training code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function, help)
COMMANDS = {
    "train": ("convlab.train_cli", "main", "train a model locally (emulated /opt/ml) or as the container does"),
    "runs": ("convlab.runs", "main", "list the runs `convlab train --local` kept, with their test accuracy"),
    "opt-ml": ("convlab.opt_ml", "main", "lay out a SageMaker /opt/ml tree for a training container"),
    "stage-source": ("convlab.train_cli", "stage_main", "write the source dir SageMaker's TF container runs"),
    "serve": ("inference.server", "convlab_main", "serve a model_dir over the SageMaker HTTP contract (local mode)"),
    "deploy": ("deploy.cli", "main", "package, register, deploy with fallback, transform, cleanup"),
    "study": ("training.experiments.cli", "convlab_main", "run a controlled experiment (one factor, several seeds)"),
    "report": ("report.cli", "convlab_main", "write the lab report from run records"),
    "launch": ("convlab.launch", "main", "upload data and launch a SageMaker training job (SDK v3)"),
    "demo": ("convlab.demo", "main", "run the lab end to end on this machine"),
}
# A library an optional part needs -> the extra that installs it.
EXTRA_OF = {"matplotlib": "report", "sagemaker": "sdk", "moto": "sandbox", "onnxruntime": "onnx", "tf2onnx": "onnx"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="convlab", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("command", choices=sorted(COMMANDS),
                            help="; ".join(f"{name}: {info[2]}" for name, info in COMMANDS.items()))
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    module_name, function, _ = COMMANDS[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRA_OF:
            raise
        print(f"convlab {argv[0]}: needs {root}, which is not installed: pip install "
              f"'convlab[{EXTRA_OF[root]}]'", file=sys.stderr)
        return 1
    return int(getattr(module, function)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
