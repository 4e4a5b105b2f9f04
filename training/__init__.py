"""Training: data readers, model specs and the SageMaker training entry point.

Everything in this package uses relative imports and needs only tensorflow, numpy and
pillow, so the folder can be staged as a SageMaker source dir where convlab is not installed.
"""
