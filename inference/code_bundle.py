"""Write the handler into a model archive's `code/` folder.

    code/inference.py            the handler (inference/handler.py)
    code/requirements.txt        what it needs beyond the standard library (numpy, pillow)
    code/convlab_inference/      the modules it imports, as a top-level package

The package name avoids clashing with the `inference` module name that the serving containers
give code/inference.py, and with any standard-library module.
"""
from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_PACKAGE = "convlab_inference"
# The handler's own imports, and theirs: nothing here may import the server or TensorFlow at import time.
MODULES = ("errors.py", "preprocessing.py", "photo.py", "decoders.py", "png_fast.py", "encoders.py", "backends.py",
           "context.py")
PACKAGE_DOC = '"""convlab\'s serving codecs and model backends, shipped beside code/inference.py."""\n'


def write_code_dir(dest_dir) -> list[Path]:
    """Write code/inference.py, code/requirements.txt and code/convlab_inference/ under dest_dir
    (a model_dir or an archive staging folder); return the files written."""
    code = Path(dest_dir) / "code"
    package = code / BUNDLED_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    written = []

    def copy(source: Path, target: Path) -> None:
        shutil.copyfile(source, target)
        written.append(target)

    copy(PACKAGE_DIR / "handler.py", code / "inference.py")
    copy(PACKAGE_DIR / "requirements.txt", code / "requirements.txt")
    init = package / "__init__.py"
    init.write_text(PACKAGE_DOC, encoding="utf-8")
    written.append(init)
    for name in MODULES:
        copy(PACKAGE_DIR / name, package / name)
    return written
