#!/usr/bin/env python
"""Batch transform of every object under an S3 prefix or folder: `<key>.out` per input.

    scripts/transform.py --local --model-dir DIR --input s3://bucket/images/ --output s3://bucket/out/
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["transform", *sys.argv[1:]]))
