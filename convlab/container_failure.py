"""What went wrong in a ModelTrainer LOCAL_CONTAINER run, in one line per failed host.

The SDK runs one container per host (algo-1, algo-2, ...) through docker-compose and keeps each
host's /opt/ml/output under <local_container_root>/<host>/output when the run fails, and merged
into <local_container_root>/artifacts/output otherwise. The training entry point writes the reason
to /opt/ml/output/failure, as SageMaker expects. docker-compose's own exit code is not a reliable
signal (with --abort-on-container-exit it is 0 when it misses which container stopped first), so a
failure file anywhere there is what counts.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def clear_previous_run(container_root: Path) -> None:
    """The SDK merges every run's outputs into the same folders: start each run without the last's."""
    for name in ("artifacts", "compressed_artifacts", "model", "output"):
        shutil.rmtree(Path(container_root) / name, ignore_errors=True)
    for host in Path(container_root).glob("algo-*"):
        shutil.rmtree(host, ignore_errors=True)


def host_failures(container_root: Path, instance_count: int = 1) -> dict[str, str]:
    """host -> first line of its failure file, for every host that left one (once the SDK has merged
    the hosts' outputs, the host is algo-1 on one instance, else not known)."""
    root = Path(container_root)
    failures = {}
    merged = "algo-1" if instance_count == 1 else f"one of algo-1..algo-{instance_count}"
    found = [(f.parent.parent.name, f) for f in sorted(root.glob("algo-*/output/failure"))]
    found += [(merged, f) for f in (root / "artifacts" / "output" / "failure",) if f.is_file()]
    for host, failure in found:
        lines = failure.read_text(errors="replace").strip().splitlines()
        if lines and lines[0] not in failures.values():
            failures[host] = lines[0]
    return failures


def describe_failure(container_root: Path, error: BaseException | None = None, instance_count: int = 1) -> str:
    """One line: which host failed and why, or, without a failure file, how the run ended."""
    failures = host_failures(container_root, instance_count)
    if failures:
        return "; ".join(f"{host} failed: {reason}" for host, reason in failures.items())
    return (f"the training container exited without a failure file ({error}); "
            "its log is above")
