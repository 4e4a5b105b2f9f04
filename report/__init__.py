"""The lab report: EDA, baseline vs CNN, one-factor studies and a look inside the CNN, written as
reports/<name>/index.html and README.md from a runs folder's records (and its best model_dirs).

Imports matplotlib; nothing in training/ or inference/ imports this package.
"""
from .build import ReportError, build_report

__all__ = ["ReportError", "build_report"]
