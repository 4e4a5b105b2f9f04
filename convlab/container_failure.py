"""What went wrong in a ModelTrainer LOCAL_CONTAINER run, in one line per failed host.

The SDK runs one container per host (algo-1, algo-2, ...) through docker-compose and keeps each
host's /opt/ml/output under <local_container_root>/<host>/output when the run fails, and merged
into <local_container_root>/artifacts/output otherwise. The training entry point writes the reason
to /opt/ml/output/failure, as SageMaker expects. docker-compose's own exit code is not a reliable
signal (with --abort-on-container-exit it is 0 when it misses which container stopped first), so a
failure file anywhere there is what counts.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("convlab.launch")


def clear_previous_run(container_root: Path) -> None:
    """The SDK merges every run's outputs into the same folders: start each run without the last's
    (and without its containers)."""
    compose_down(container_root)
    for name in ("artifacts", "compressed_artifacts", "model", "output"):
        shutil.rmtree(Path(container_root) / name, ignore_errors=True)
    for host in Path(container_root).glob("algo-*"):
        shutil.rmtree(host, ignore_errors=True)


def compose_down(container_root: Path) -> None:
    """Remove the run's containers (docker-compose leaves them stopped). Left behind, they belong to
    the same compose project as every later run (named after the folder, `container`), which then
    stops on them as orphans, or on their image once it has been rebuilt."""
    compose_file = Path(container_root) / "docker-compose.yaml"
    if not compose_file.is_file():
        return
    try:
        result = subprocess.run(["docker-compose", "-f", str(compose_file), "down", "--remove-orphans"],
                                capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not remove the containers of %s: %s", compose_file, exc)
        return
    if result.returncode != 0:
        log.warning("docker-compose down %s: %s", compose_file, result.stderr.strip()[-300:])


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
