#!/usr/bin/env python
"""Run one-factor studies: python scripts/run_study.py --all --runs runs/full (see --help)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.experiments.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
