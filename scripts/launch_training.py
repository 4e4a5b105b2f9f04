#!/usr/bin/env python
"""Upload a data set and launch a SageMaker training job with SDK v3 (see convlab/launch.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convlab.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
