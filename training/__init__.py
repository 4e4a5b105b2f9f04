"""Training: data readers, model specs and the SageMaker training entry point.

Everything staged here uses relative imports, needs only tensorflow, numpy and pillow, plus
convlab.atomic (standard library only), which training.local.stage_source_dir stages beside it,
so the folder runs as a SageMaker source dir where convlab is not installed. local.py and
experiments/ are not staged: they run where convlab is installed and use its S3 and archive helpers.
"""
