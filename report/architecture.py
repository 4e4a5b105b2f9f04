"""One paragraph per architecture, computed from its config: layers, locality, parameter sharing and
receptive field. Numbers here come from the config and the run record, never typed in."""
from __future__ import annotations

from training.models import ModelConfig, receptive_fields

from .analysis import count


def block_sizes(config: ModelConfig) -> list[tuple[int, int]]:
    """(height, width) of the feature map leaving each conv block."""
    sizes = config.spatial_sizes()
    per_conv = config.convs_per_block + (1 if config.pooling != "none" else 0)
    return [(sizes[(b + 1) * per_conv - 1][1], sizes[(b + 1) * per_conv - 1][2]) for b in range(config.depth)]


def layer_plan(config: ModelConfig) -> str:
    if config.model == "mlp":
        return " -> ".join(["Flatten"] + [f"Dense({w}, ReLU)" for w in config.dense] + [f"Dense({config.num_classes})"])
    parts = []
    for width in config.block_filters():
        conv = f"Conv{config.kernel_size}x{config.kernel_size}({width}, stride {config.stride}, {config.padding})"
        unit = conv + ("+BN" if config.batch_norm else "") + "+ReLU"
        parts.append(" + ".join([unit] * config.convs_per_block) +
                     ("" if config.pooling == "none" else f" + {config.pooling}pool{config.pool_size}"))
    head = ["Flatten"] + ([f"Dropout({config.dropout:g})"] if config.dropout else []) + \
        [f"Dense({w}, ReLU)" for w in config.dense] + [f"Dense({config.num_classes})"]
    return " -> ".join([f"[{p}]" for p in parts] + head)


def describe(config_dict: dict, params: int, flops: int) -> str:
    config = ModelConfig.from_dict({k: v for k, v in config_dict.items()})
    height, width, channels = config.input_shape
    pixels = height * width * channels
    if config.model == "mlp":
        first = config.dense[0] if config.dense else config.num_classes
        return (f"**Baseline MLP** ({layer_plan(config)}; {count(params)} parameters, {count(flops)} FLOPs per "
                f"image). The {height}x{width}x{channels} image is flattened into {pixels} numbers, and each of the "
                f"{first} first-layer units has its own weight for every one of them: {pixels * first:,} weights "
                "in that layer alone. Nothing is local (a unit sees the whole image at once) and nothing is "
                "shared (a pattern learned at one position must be learned again at every other), so a garment "
                "shifted by a few pixels reaches entirely different weights.")
    sizes = block_sizes(config)
    fields = receptive_fields(config)
    filters = config.block_filters()
    k = config.kernel_size
    first_conv = config.spatial_sizes()[0]
    out_h, out_w = first_conv[1], first_conv[2]
    shared = k * k * channels * filters[0]
    dense_equivalent = pixels * out_h * out_w * filters[0]
    blocks = "; ".join(f"block {i + 1}: {f} filters, {h}x{w} maps, receptive field {r}x{r} px"
                       for i, (f, (h, w), r) in enumerate(zip(filters, sizes, fields)))
    return (f"**CNN** ({layer_plan(config)}; {count(params)} parameters, {count(flops)} FLOPs per image). "
            f"Locality: each first-layer unit looks at a {k}x{k} patch, {k * k} of the {height * width} pixel "
            f"positions. Parameter sharing: the first conv layer's {shared:,} weights "
            f"({k}x{k}x{channels}x{filters[0]}) are reused at all {out_h}x{out_w} positions; a dense layer "
            f"producing the same {out_h}x{out_w}x{filters[0]} "
            f"outputs from the image would need {dense_equivalent:,} weights ({dense_equivalent / shared:,.0f}x more). "
            f"Receptive field: stacking blocks lets later units see more of the image ({blocks}), so the last "
            f"block combines evidence from a {fields[-1]}x{fields[-1]} pixel region"
            + (" (clipped to the image)" if fields[-1] > height else "") + ".")
