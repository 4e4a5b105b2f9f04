"""Mixed precision training: the `precision` hyperparameter.

`mixed_bfloat16` computes in bfloat16 with float32 weights: 1.5-1.6x faster training on CPUs with
avx512_bf16 or AMX (bench/train_throughput.py), and on GPUs that have bfloat16. `mixed_float16`
is the GPU choice for older cards (Keras scales the loss). The last layer computes in float32, and
the model that is evaluated and exported is a float32 copy with the trained weights, so model.keras,
the SavedModel and model.onnx are the same whatever the precision of training.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@contextmanager
def precision_policy(name: str):
    """Keras' global dtype policy set to `name` while the block runs, then put back."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model, config, compile_model: Callable):
    """The same architecture built in float32, holding `model`'s weights, compiled."""
    from .models import build_model

    with precision_policy("float32"):
        copy = build_model(config)
    copy.set_weights(model.get_weights())
    compile_model(copy)
    # Built, so model.keras saves an optimizer with the variables loading it expects.
    copy.optimizer.build(copy.trainable_variables)
    return copy
