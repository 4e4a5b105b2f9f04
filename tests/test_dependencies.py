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


def installed_version(name: str) -> tuple[str, str] | None:
    """(distribution, version) installed for the pinned `name`: the distribution itself, else the
    one that provides its import package (tensorflow's pin, for the tensorflow-cpu wheel setup.py
    installs on x86-64 Linux), else None."""
    try:
        return name, metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    providers = metadata.packages_distributions().get(name.replace("-", "_"), [])
    for provider in providers:
        try:
            return _name(provider), metadata.version(provider)
        except metadata.PackageNotFoundError:
            continue
    return None


def pin_problem(name: str, version: str) -> str | None:
    """Why the environment does not hold constraints.txt's `name==version`, or None."""
    found = installed_version(name)
    if found is None:
        return (f"constraints.txt pins {name}=={version}, but neither it nor a package providing its "
                f"import `{name.replace('-', '_')}` is installed (pip install -c constraints.txt -e '.[all]')")
    distribution, installed = found
    if installed != version:
        via = "" if distribution == name else f" (through {distribution})"
        return f"constraints.txt pins {name}=={version}; the environment has {installed}{via}"
    return None


@pytest.mark.parametrize("name,version", sorted(_pins().items()))
def test_every_pinned_package_is_installed_at_its_pin(name, version):
    assert pin_problem(name, version) is None


def test_a_pin_the_environment_does_not_hold_is_reported():
    tensorflow = installed_version("tensorflow")
    assert tensorflow is not None, "TensorFlow (tensorflow or tensorflow-cpu) is not installed"
    assert pin_problem("tensorflow", "0.0.1") == (f"constraints.txt pins tensorflow==0.0.1; the environment has "
                                                  f"{tensorflow[1]}" + ("" if tensorflow[0] == "tensorflow" else
                                                                        f" (through {tensorflow[0]})"))
    assert "neither it nor a package providing its import `no_such_package_x` is installed" in \
        pin_problem("no-such-package-x", "1.0")
