"""What went wrong in a ModelTrainer LOCAL_CONTAINER run, in one line per failed host.

The SDK runs one container per host (algo-1, algo-2, ...) through docker-compose and keeps each
host's /opt/ml/output under <local_container_root>/<host>/output when the run fails. The training
entry point writes the reason to /opt/ml/output/failure, as SageMaker expects.
"""
from __future__ import annotations

from pathlib import Path


def host_failures(container_root: Path) -> dict[str, str]:
    """host -> first line of its failure file, for every host that left one."""
    failures = {}
    for failure in sorted(Path(container_root).glob("algo-*/output/failure")):
        lines = failure.read_text(errors="replace").strip().splitlines()
        if lines:
            failures[failure.parent.parent.name] = lines[0]
    return failures


def describe_failure(container_root: Path, error: BaseException) -> str:
    """One line: which host failed and why, or, without a failure file, how the run ended."""
    failures = host_failures(container_root)
    if failures:
        return "; ".join(f"{host} failed: {reason}" for host, reason in failures.items())
    return (f"the training container exited without a failure file ({error}); "
            "its log is above")
