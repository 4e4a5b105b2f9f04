"""What the package declares: the report's libraries stay out of the core install, every import
is declared, and constraints.txt matches the environment the tests run in."""
from __future__ import annotations

import re
import runpy
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
BLOCK_MATPLOTLIB = """
import sys
class _NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoMatplotlib())
"""


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def declared() -> dict:
    seen: dict = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: seen.update(kwargs)
    try:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return seen


def test_matplotlib_is_in_the_report_extra_and_not_in_the_core(declared):
    core = {_name(r) for r in declared["install_requires"]}
    extras = {name: {_name(r) for r in reqs} for name, reqs in declared["extras_require"].items()}
    assert "matplotlib" not in core
    assert "matplotlib" in extras["report"] and "matplotlib" in extras["all"]
    assert "pyyaml" in core, "training/experiments/spec.py reads YAML study specs with PyYAML"


def test_python_floor_is_stated(declared):
    assert declared["python_requires"] == ">=3.10"
    assert "Python 3.10" in (ROOT / "README.md").read_text()


def test_serving_and_training_import_without_matplotlib():
    code = BLOCK_MATPLOTLIB + (
        "import inference.server, inference.app, training.train\n"
        "try:\n    import matplotlib\nexcept ImportError:\n    print('blocked')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
                                              "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("blocked"), "the import hook did not block matplotlib"


def test_the_report_command_without_matplotlib_names_the_extra():
    code = BLOCK_MATPLOTLIB + "from convlab.cli import main\nraise SystemExit(main(['report', '--runs', 'x']))\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "pip install 'convlab[report]'" in result.stderr and "Traceback" not in result.stderr


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[_name(name)] = version.strip()
    return pins


def test_constraints_pin_the_packages_whose_versions_matter():
    assert {"tensorflow-cpu", "keras", "onnxruntime", "tf2onnx", "onnx", "sagemaker", "sagemaker-core",
            "moto", "boto3", "botocore", "pyyaml"} <= set(_pins())


@pytest.mark.parametrize("name,version", sorted(_pins().items()))
def test_every_pinned_package_is_installed_at_its_pin(name, version):
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here")
    assert installed == version, f"constraints.txt pins {name}=={version}; the environment has {installed}"
