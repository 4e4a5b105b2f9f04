"""Controlled experiments: study specs, the resumable runner and the run records."""
from .spec import Setting, Study, StudyError, builtin_names, load_study, resolve_study, study_from_dict

__all__ = ["Setting", "Study", "StudyError", "builtin_names", "load_study", "resolve_study", "study_from_dict"]
