#!/usr/bin/env python
"""Write notebooks/convlab_sagemaker.ipynb from the cells below (edit here, then run this script).

    python notebooks/build_notebook.py [--check]     # --check: exit 1 when the .ipynb is out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cells import STUDY_CELLS  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent / "convlab_sagemaker.ipynb"

CELLS = [
    ("md", """\
# Convolutional layers on Amazon SageMaker

The lab's path in SageMaker Studio: look at Fashion-MNIST, upload it to S3, train the dense
baseline and the CNN as SageMaker training jobs (SDK v3 `ModelTrainer`, AWS's TensorFlow
training container, managed spot), read their metrics, deploy the CNN (real-time endpoint, else
batch transform, else this machine), predict images from S3, and clean up.

Everything it calls is convlab's own code (`convlab.launch`, `deploy`), so each step is also a
command: `convlab launch`, `convlab deploy`. It runs unchanged in Studio; these environment
variables change where it points:

| variable | default |
|---|---|
| `AWS_ENDPOINT_URL` | AWS itself (another endpoint, e.g. a moto server, for the tests) |
| `SAGEMAKER_ROLE_ARN` | this notebook's execution role |
| `CONVLAB_BUCKET` | `sagemaker-<region>-<account>` |
| `CONVLAB_MODEL_URI` | the CNN job's `model.tar.gz` (set it to deploy a model trained earlier) |
| `CONVLAB_WORK_DIR` | `work/notebook` in the repository |"""),
    ("md", "## 0. Set up: session, role, bucket"),
    ("code", """\
import io
import json
import logging
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

try:
    import convlab
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path.cwd().parent))
    import convlab
from convlab import launch

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
for noisy in ("botocore", "sagemaker.config", "sagemaker.core.telemetry"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

ROOT = Path(convlab.__file__).resolve().parent.parent
WORK = Path(os.environ.get("CONVLAB_WORK_DIR", ROOT / "work" / "notebook"))
PREFIX = "convlab/fashion-mnist"
INSTANCE_TYPE = "ml.m5.xlarge"

session = launch.sagemaker_session(os.environ.get("AWS_REGION"), os.environ.get("CONVLAB_BUCKET"))
role = launch.resolve_role(os.environ.get("SAGEMAKER_ROLE_ARN"), session)
bucket = session.default_bucket()
s3 = session.boto_session.client("s3")
print(f"AWS:    {os.environ.get('AWS_ENDPOINT_URL', 'aws')} ({session.boto_region_name})")
print(f"role:   {role}")
print(f"bucket: s3://{bucket}/{PREFIX}")"""),
    ("md", """\
## 1. Look at the data

Fashion-MNIST: 28x28 grayscale images of 10 kinds of clothing, 60,000 for training and 10,000
for testing, the same number of each class."""),
    ("code", """\
from IPython.display import Image, display

from report.eda import class_distribution, sample_grid
from training.data import find_fashion_mnist, read_channel

data_dir = find_fashion_mnist()
train, test = read_channel(data_dir, "train"), read_channel(data_dir, "test")
print(f"{len(train):,} training and {len(test):,} test images, {train.image_shape}, classes: {train.classes}")
display(Image(filename=str(class_distribution(train.labels, test.labels, train.classes, WORK / "classes.png"))))
display(Image(filename=str(sample_grid(train.images, train.labels, train.classes, WORK / "samples.png",
                                       per_class=6))))"""),
    ("md", """\
## 2. Upload

The four IDX files go to S3 as they are: `train-*` to the `train` channel, `t10k-*` to `test`.
A file already there with the same MD5 is not sent again."""),
    ("code", """\
channels = launch.upload_dataset(s3, data_dir, bucket, PREFIX)
channels"""),
    ("md", """\
## 3. Launch the baseline and the CNN

Both jobs start at once. Each gets the staged source dir (`train.py`, the `training` package,
`requirements.txt`), AWS's TensorFlow training image, the model config as hyperparameters,
metric definitions for the `convlab-metrics` log line (they appear in the job's metrics and in
CloudWatch), and managed spot training with checkpoints in S3, so a reclaimed instance resumes
where it stopped. `instance_count=2` would train one model on two instances."""),
    ("code", """\
runs = {
    "baseline": {"model": "mlp", "dense": "256,128", "epochs": 10},
    "cnn": {"model": "cnn", "depth": 2, "filters": 32, "kernel_size": 3, "pooling": "max", "epochs": 10},
}
submitted = {
    name: launch.submit(launch.LaunchConfig(hyperparameters=hps, channels=channels, role=role,
                                            instance_type=INSTANCE_TYPE, work_dir=WORK / "launch"), session)
    for name, hps in runs.items()
}
for name, job in submitted.items():
    print(f"{name:9} {job.job_name}  {job.image_uri}")"""),
    ("md", "## 4. Wait, then read the metrics"),
    ("code", """\
results = {name: launch.finish(job, logs=False) for name, job in submitted.items()}
for name, result in results.items():
    m = result.metrics
    if m:
        print(f"{name:9} test accuracy {m['test_accuracy']:.4f}  {m['params']:,} parameters  "
              f"{m['mean_seconds_per_epoch']:.1f} s/epoch")
    else:
        print(f"{name:9} {result.status}: {result.metrics_note}")"""),
    ("md", """\
The model to deploy: the CNN job's `model.tar.gz`, or `CONVLAB_MODEL_URI` when set. Its
`metrics.json` travels inside the archive."""),
    ("code", """\
from deploy.register import archive_json

model_uri = os.environ.get("CONVLAB_MODEL_URI") or results["cnn"].model_uri
archive = WORK / "model.tar.gz"
model_bucket, _, model_key = model_uri[len("s3://"):].partition("/")
s3.download_file(model_bucket, model_key, str(archive))
deployed = archive_json(archive, "metrics.json")
print(f"{model_uri}\\n{deployed['model_type']}: test accuracy {deployed['test_accuracy']:.4f}, "
      f"{deployed['params']:,} parameters")"""),
    ("md", """\
## 5. Deploy with fallback

`convlab deploy` tries a real-time endpoint first. Accounts that refuse endpoints (AWS Academy /
Learner Lab deny `sagemaker:CreateEndpointConfig`) get a batch transform job instead, and an
account that refuses that too gets the same transform run on this machine. Whatever a refused
step created is deleted. An endpoint or job that fails (or a job that completes without an
output for every input) stops the deploy with the reason and what to do next. The inputs: one
test image per class, as PNG files in S3."""),
    ("code", """\
import numpy as np
from PIL import Image as PILImage

from deploy.cli import main as deploy_cli
from deploy.score import class_folder

picks = [int(np.flatnonzero(test.labels == c)[0]) for c in range(len(test.classes))]
input_uri = f"s3://{bucket}/{PREFIX}/transform-input/"
for i in picks:
    png = io.BytesIO()
    PILImage.fromarray(test.images[i][..., 0]).save(png, format="PNG")
    key = f"{PREFIX}/transform-input/{class_folder(test.classes[test.labels[i]])}/{i}.png"
    s3.put_object(Bucket=bucket, Key=key, Body=png.getvalue(), ContentType="image/png")

result_path = WORK / "deploy-result.json"
with redirect_stdout(io.StringIO()):  # the full result is in result_path
    status = deploy_cli(["deploy", "--archive", str(archive), "--bucket", bucket, "--prefix", "convlab/deploy",
                         "--role", role, "--input", input_uri, "--work-dir", str(WORK / "deploy"),
                         "--result", str(result_path), "--poll", "10", "--no-progress"])
deployment = json.loads(result_path.read_text())
print(f"served by: {deployment['served_by']}  (exit status {status})")
for attempt in deployment["attempts"]:
    print(f"  {attempt['step']:9} {attempt['status']}")
for refusal in deployment["refusals"]:
    print(f"  why not {refusal['step']}: {refusal['operation']} -> {refusal['error_code']}: {refusal['message']}")
failure = deployment.get("failure")
if failure:
    print(f"  stopped: {failure['resource']} ended {failure['status']}: {failure['reason']}")"""),
    ("md", """\
## 6. Batch transform: predictions for the images in S3

Each input `a/b.png` has its answer in `a/b.png.out`. When the deploy ended on an endpoint, a
batch transform job runs here on the same model. When the transform job did not write every
output (a sandbox's simulated jobs write none), the same handler predicts on this machine, and
says so."""),
    ("code", """\
from deploy.package import extract_archive
from deploy.score import predicted_class
from deploy.stores import open_store

if deployment["served_by"] == "endpoint":
    with redirect_stdout(io.StringIO()):
        deploy_cli(["transform", "--input", input_uri, "--output", f"s3://{bucket}/convlab/deploy/endpoint-batch/",
                    "--model-name", deployment["model"]["name"]])
    output = f"s3://{bucket}/convlab/deploy/endpoint-batch/"
elif deployment["served_by"]:
    output = deployment["predictions"].get("s3_uri") or deployment["predictions"]["path"]
else:
    output = None
answers = {}
if output:
    store = open_store(output, s3)
    answers = {i.relative[:-len(".out")]: store.read(i.relative) for i in store.items() if i.relative.endswith(".out")}
where = f"batch transform outputs in {output}"
if not answers:
    if failure and "outputs" in failure:
        print(f"the transform job wrote {failure['outputs']} of {failure['inputs']} outputs: "
              "predicting the same inputs with the serving handler here")
    else:
        print(f"{output or 'the deploy'} gave no outputs: predicting the same inputs with the serving handler here")
    output = str(WORK / "local-predictions")
    model_dir = extract_archive(archive, WORK / "model")
    with redirect_stdout(io.StringIO()):
        deploy_cli(["transform", "--local", "--model-dir", str(model_dir), "--input", input_uri, "--output", output,
                    "--no-progress"])
    store = open_store(output)
    answers = {i.relative[:-len(".out")]: store.read(i.relative) for i in store.items() if i.relative.endswith(".out")}
    where = f"local predictions in {output}"
print(f"{len(answers)} answers ({where})")"""),
    ("code", """\
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, len(picks), figsize=(1.6 * len(picks), 2.2))
for ax, i in zip(axes, picks):
    relative = f"{class_folder(test.classes[test.labels[i]])}/{i}.png"
    guess = test.classes[predicted_class(answers[relative])]
    ax.imshow(test.images[i][..., 0], cmap="gray")
    ax.set_title(f"{guess}\\n(true: {test.classes[test.labels[i]]})", fontsize=7,
                 color="black" if guess == test.classes[test.labels[i]] else "red")
    ax.axis("off")
fig.savefig(WORK / "predictions.png", bbox_inches="tight")
plt.close(fig)
display(Image(filename=str(WORK / "predictions.png")))"""),
    *STUDY_CELLS,
    ("md", """\
## 8. Clean up

Deletes what the deploy created that costs money or names: endpoint, endpoint config, transform
job record, model. Training jobs cannot be deleted; their artifacts stay under the output path."""),
    ("code", """\
with redirect_stdout(io.StringIO()) as printed:
    deploy_cli(["cleanup", "--result", str(result_path)])
cleanup = json.loads(printed.getvalue())
for outcome in cleanup["deleted"]:
    print(f"{outcome['status']:8} {outcome['resource']}  {outcome.get('reason', '')}")"""),
]


def build() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(text) if kind == "md" else new_code_cell(text) for kind, text in CELLS]
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"
    return notebook


def main(argv: list[str]) -> int:
    text = nbformat.writes(build())
    if "--check" in argv:
        current = NOTEBOOK.read_text() if NOTEBOOK.exists() else ""
        if current != text:
            print(f"{NOTEBOOK} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.write_text(text)
    print(NOTEBOOK)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
