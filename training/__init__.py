"""Training: data readers, model specs and the SageMaker training entry point.

What a training job runs uses relative imports and needs only tensorflow, numpy and pillow, so the
folder can be staged as a SageMaker source dir where convlab is not installed. local.py and
experiments/ (never staged) and data.idx.write_idx run where convlab is installed and use its
shared helpers (convlab.atomic, convlab.archives, convlab.s3io).
"""
