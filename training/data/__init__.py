"""Dataset readers: a channel directory in any supported format -> ImageSet (uint8 NHWC images,
int64 labels, class names). Depends on numpy and Pillow only."""
from .base import FASHION_MNIST_CLASSES, DataError, ImageSet
from .channels import detect, find_fashion_mnist, has_split, load_channels, read_channel
from .idx import read_idx, write_idx
from .split import stratified_split

__all__ = [
    "FASHION_MNIST_CLASSES", "DataError", "ImageSet", "detect", "find_fashion_mnist", "has_split",
    "load_channels", "read_channel", "read_idx", "stratified_split", "write_idx",
]
