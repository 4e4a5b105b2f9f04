"""The notebook's section on the controlled experiments as SageMaker training jobs (see build_notebook.py)."""

STUDY_CELLS = [
    ("md", """\
## 7. The controlled experiments as parallel SageMaker training jobs

Each study varies one convolutional factor of the base CNN and holds everything else fixed. Every
(setting, seed) becomes one training job, several running at once; each job's `metrics.json` is
read back from its `model.tar.gz` into one record per run (`WORK/study/records/`), and the lab
report is built from those records. A rerun skips the runs already recorded and collects the jobs
still running. `CONVLAB_STUDY_SPECS` (a JSON list of study specs) replaces the built-in studies;
`convlab study --sagemaker --tune` runs a study as one hyperparameter tuning job instead."""),
    ("code", """\
from report.build import build_report
from training.experiments import resolve_study, study_from_dict
from training.experiments.sagemaker_runner import SageMakerSettings, run_sagemaker

specs = os.environ.get("CONVLAB_STUDY_SPECS")
if specs:
    studies = [study_from_dict(spec, specs) for spec in json.loads(Path(specs).read_text())]
else:
    studies = [resolve_study(name).with_changes(base_overrides={"epochs": 10}) for name in ("baseline", "kernel_size")]
study_settings = SageMakerSettings(role=role, training_image=submitted["cnn"].image_uri, instance_type=INSTANCE_TYPE,
                                   output_path=f"s3://{bucket}/convlab/study", max_parallel=6,
                                   poll_seconds=float(os.environ.get("CONVLAB_POLL_SECONDS", "30")))
summary = run_sagemaker(studies, channels, WORK / "study", study_settings, session=session,
                        boto_session=session.boto_session)
print(f"{summary['planned']} runs: {len(summary['trained'])} trained as SageMaker jobs, "
      f"{len(summary['skipped'])} recorded before")
paths = build_report(WORK / "study", "sagemaker-study", WORK / "reports", data=str(data_dir))
print(f"report: {paths['readme']}")"""),
    ("code", """\
from training.experiments.records import load_records

records = load_records(WORK / "study")
for study in studies:
    document = json.loads((WORK / "study" / "studies" / f"{study.name}.json").read_text())
    print(f"{study.title or study.name} ({study.factor}):")
    for setting in document["settings"]:
        accuracies = [records[rid]["test_accuracy"] for rid in setting["run_ids"]]
        print(f"  {setting['label']:8} test accuracy {sum(accuracies) / len(accuracies):.4f} "
              f"over {len(accuracies)} jobs")"""),
]
