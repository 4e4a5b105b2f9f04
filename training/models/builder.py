"""Keras models as functions of a ModelConfig, and their summary (params and FLOPs per layer)."""
from __future__ import annotations

import keras
from keras import layers

from .config import ModelConfig


def build_model(config: ModelConfig) -> keras.Model:
    """Build the baseline MLP or the CNN described by `config` (validated first)."""
    config.validate()
    inputs = keras.Input(shape=config.input_shape, name="images")
    x = inputs
    if config.model == "cnn":
        for block, width in enumerate(config.block_filters(), start=1):
            for conv in range(1, config.convs_per_block + 1):
                x = layers.Conv2D(width, config.kernel_size, strides=config.stride, padding=config.padding,
                                  use_bias=not config.batch_norm, name=f"block{block}_conv{conv}")(x)
                if config.batch_norm:
                    # momentum 0.9: the running statistics settle within a short run too
                    x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
                x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
            if config.pooling == "max":
                x = layers.MaxPooling2D(config.pool_size, name=f"block{block}_pool")(x)
            elif config.pooling == "avg":
                x = layers.AveragePooling2D(config.pool_size, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    if config.dropout and config.model == "cnn":
        x = layers.Dropout(config.dropout, name="dropout")(x)
    for i, width in enumerate(config.dense, start=1):
        x = layers.Dense(width, activation="relu", name=f"dense{i}")(x)
        if config.dropout and config.model == "mlp":
            x = layers.Dropout(config.dropout, name=f"dropout{i}")(x)
    # Under a mixed precision policy the head computes in float32 (softmax and loss in bfloat16 lose digits).
    head = "float32" if keras.mixed_precision.global_policy().name != "float32" else None
    x = layers.Dense(config.num_classes, name="logits", dtype=head)(x)
    if not config.logits:
        x = layers.Softmax(name="probabilities", dtype=head)(x)
    return keras.Model(inputs, x, name=config.model)


def _flops(layer, input_shape, output_shape) -> int:
    """Floating point operations per image (a multiply-add counts 2) of the layers that dominate."""
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = input_shape[-1]
        h, w, cout = output_shape[1], output_shape[2], output_shape[3]
        flops = 2 * h * w * kh * kw * cin * cout
        return flops + (h * w * cout if layer.use_bias else 0)
    if isinstance(layer, layers.Dense):
        return 2 * input_shape[-1] * layer.units + layer.units
    if isinstance(layer, layers.BatchNormalization):
        return 2 * _numel(output_shape)
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        ph, pw = layer.pool_size
        return _numel(output_shape) * ph * pw
    if isinstance(layer, (layers.ReLU, layers.Softmax)):
        return _numel(output_shape)
    return 0


def _numel(shape) -> int:
    total = 1
    for dim in shape[1:]:
        total *= int(dim)
    return total


def model_summary(model: keras.Model) -> dict:
    """Per-layer output shape, parameters and FLOPs per image, with totals."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        in_shape = tuple(layer.input.shape)
        out_shape = tuple(layer.output.shape)
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": [None if d is None else int(d) for d in out_shape],
            "params": int(layer.count_params()),
            "flops": int(_flops(layer, in_shape, out_shape)),
        })
    return {
        "layers": rows,
        "total_params": int(model.count_params()),
        "trainable_params": int(sum(keras.ops.size(w) for w in model.trainable_weights)),
        "flops_per_image": int(sum(row["flops"] for row in rows)),
    }

