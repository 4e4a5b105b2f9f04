"""The model config: a small dataclass that round-trips to JSON and to SageMaker hyperparameters."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

MODEL_TYPES = ("mlp", "cnn")
PADDINGS = ("same", "valid")
POOLINGS = ("max", "avg", "none")


class ConfigError(ValueError):
    """A model config or hyperparameter that cannot be used; the message names the field."""


def _parse_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"hyperparameter '{name}': expected true or false, got {value!r}")


def _parse_int_list(name: str, value) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip().strip("[]")
        items = [part for part in text.replace(" ", ",").split(",") if part]
    try:
        return tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter '{name}': expected comma-separated integers, got {value!r}") from None


def parse_value(name: str, value, kind):
    """Parse one hyperparameter value (SageMaker passes every value as a string) to `kind`."""
    if kind is bool:
        return _parse_bool(name, value)
    if kind == "int_list":
        return _parse_int_list(name, value)
    if kind is int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"hyperparameter '{name}': expected an integer, got {value!r}") from None
        if number != int(number):
            raise ConfigError(f"hyperparameter '{name}': expected an integer, got {value!r}")
        return int(number)
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"hyperparameter '{name}': expected a number, got {value!r}") from None
    return str(value).strip()


@dataclass
class ModelConfig:
    """Architecture of the baseline MLP or the CNN.

    The CNN has `depth` conv blocks; block i has `filters * filter_multiplier**i` filters, each
    block being `convs_per_block` conv layers (kernel_size, stride, padding, optional batch norm,
    ReLU) followed by pooling (max/avg/none of pool_size). The head is Flatten, dropout, the
    `dense` widths with ReLU, and a Dense(num_classes) with softmax (or logits).
    The MLP is Flatten then the `dense` widths then Dense(num_classes).
    """

    model: str = "cnn"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    depth: int = 2
    filters: int = 32
    filter_multiplier: float = 2.0
    kernel_size: int = 3
    stride: int = 1
    padding: str = "same"
    pooling: str = "max"
    pool_size: int = 2
    batch_norm: bool = False
    convs_per_block: int = 1
    dropout: float = 0.0
    dense: tuple[int, ...] = field(default=(128,))
    logits: bool = False

    FIELD_KINDS = {
        "model": str, "input_shape": "int_list", "num_classes": int, "depth": int, "filters": int,
        "filter_multiplier": float, "kernel_size": int, "stride": int, "padding": str,
        "pooling": str, "pool_size": int, "batch_norm": bool, "convs_per_block": int,
        "dropout": float, "dense": "int_list", "logits": bool,
    }

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.dense = tuple(int(v) for v in self.dense)

    def block_filters(self) -> list[int]:
        return [max(1, int(round(self.filters * self.filter_multiplier ** i))) for i in range(self.depth)]

    def validate(self) -> "ModelConfig":
        """Check every field and the spatial size through the network; raise ConfigError naming the culprit."""
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape: expected (height, width, channels) >= 1, got {self.input_shape}")
        self.check_fields()
        if self.model == "cnn":
            self.spatial_sizes()  # raises on a size that shrinks below 1
        return self

    def check_fields(self) -> "ModelConfig":
        """Check every field a hyperparameter sets, without the input size the data decides."""
        if self.model not in MODEL_TYPES:
            raise ConfigError(f"hyperparameter 'model': expected one of {MODEL_TYPES}, got {self.model!r}")
        if self.padding not in PADDINGS:
            raise ConfigError(f"hyperparameter 'padding': expected one of {PADDINGS}, got {self.padding!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"hyperparameter 'pooling': expected one of {POOLINGS}, got {self.pooling!r}")
        positive = {"num_classes": self.num_classes, "kernel_size": self.kernel_size, "stride": self.stride,
                    "pool_size": self.pool_size, "convs_per_block": self.convs_per_block,
                    "filters": self.filters}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"hyperparameter '{name}': expected an integer >= 1, got {value}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes: expected at least 2 classes, got {self.num_classes}")
        if self.depth < (1 if self.model == "cnn" else 0):
            raise ConfigError(f"hyperparameter 'depth': a CNN needs at least 1 conv block, got {self.depth}")
        if self.filter_multiplier <= 0:
            raise ConfigError(f"hyperparameter 'filter_multiplier': expected > 0, got {self.filter_multiplier}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"hyperparameter 'dropout': expected 0 <= dropout < 1, got {self.dropout}")
        if any(width < 1 for width in self.dense):
            raise ConfigError(f"hyperparameter 'dense': widths must be >= 1, got {list(self.dense)}")
        return self

    def spatial_sizes(self) -> list[tuple[str, int, int]]:
        """(layer name, height, width) after every conv and pooling layer; raises when a size drops below 1."""
        height, width = self.input_shape[0], self.input_shape[1]
        sizes = []
        for block in range(self.depth):
            for conv in range(self.convs_per_block):
                name = f"block{block + 1}_conv{conv + 1}"
                height, width = (_conv_out(height, self.kernel_size, self.stride, self.padding),
                                 _conv_out(width, self.kernel_size, self.stride, self.padding))
                if height < 1 or width < 1:
                    raise ConfigError(
                        f"layer {name}: a {self.kernel_size}x{self.kernel_size} kernel with stride {self.stride} "
                        f"and padding '{self.padding}' leaves a {height}x{width} feature map (needs >= 1x1); "
                        "use fewer blocks, padding 'same', a smaller kernel or stride")
                sizes.append((name, height, width))
            if self.pooling != "none":
                name = f"block{block + 1}_pool"
                height, width = height // self.pool_size, width // self.pool_size
                if height < 1 or width < 1:
                    raise ConfigError(
                        f"layer {name}: {self.pooling} pooling of size {self.pool_size} leaves a "
                        f"{height}x{width} feature map (needs >= 1x1); use fewer blocks or pooling 'none'")
                sizes.append((name, height, width))
        return sizes

    # --- round trips -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["dense"] = list(self.dense)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        unknown = sorted(set(data) - set(cls.FIELD_KINDS))
        if unknown:
            raise ConfigError(f"model config: unknown field(s) {unknown}; expected some of {sorted(cls.FIELD_KINDS)}")
        values = {name: parse_value(name, value, cls.FIELD_KINDS[name]) for name, value in data.items()}
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def to_hyperparameters(self) -> dict[str, str]:
        """SageMaker hyperparameters: every value a string (input_shape comes from the data)."""
        out = {}
        for name, value in self.to_dict().items():
            if name in ("input_shape", "num_classes"):
                continue
            if isinstance(value, list):
                out[name] = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hyperparameters(cls, hps: dict) -> "ModelConfig":
        return cls.from_dict({k: v for k, v in hps.items() if k in cls.FIELD_KINDS})


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def receptive_fields(config: ModelConfig) -> list[int]:
    """Receptive field (pixels, one side) of a unit after each conv block."""
    fields, size, jump = [], 1, 1
    for _ in range(config.depth if config.model == "cnn" else 0):
        for _ in range(config.convs_per_block):
            size += (config.kernel_size - 1) * jump
            jump *= config.stride
        if config.pooling != "none":
            size += (config.pool_size - 1) * jump
            jump *= config.pool_size
        fields.append(size)
    return fields


def receptive_field(config: ModelConfig) -> int:
    """Receptive field (pixels, one side) of one unit after the last conv block (the whole image for an MLP)."""
    fields = receptive_fields(config)
    return fields[-1] if fields else config.input_shape[0]
