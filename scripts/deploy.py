#!/usr/bin/env python
"""Package, register and deploy a model_dir: endpoint -> batch transform -> local (see deploy/cli.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
