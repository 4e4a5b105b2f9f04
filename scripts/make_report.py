#!/usr/bin/env python
"""Write the lab report of a runs folder: python scripts/make_report.py --runs runs/demo --name demo"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from report.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
