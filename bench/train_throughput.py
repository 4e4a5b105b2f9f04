"""Training throughput: convlab's input pipeline against a plain `model.fit(x_numpy, y_numpy)`.

Same CNN (3x3 kernels, 32/64 filters, the lab's), same data, same epochs and batch size, in one
process. Prints seconds per epoch for both (first epoch excluded: it includes tracing) and the ratio.
Target: convlab <= 0.85x plain fit.

    python bench/train_throughput.py [--samples 60000] [--epochs 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.data import find_fashion_mnist, read_channel  # noqa: E402
from training.hyperparameters import parse_hyperparameters  # noqa: E402
from training.models import build_model  # noqa: E402
from training.pipeline import make_dataset  # noqa: E402
from training.train import _compile  # noqa: E402


class Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def fresh_model(params, config):
    keras.utils.set_random_seed(0)
    model = build_model(config)
    _compile(model, params, config, steps_per_epoch=1)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    data = read_channel(find_fashion_mnist(), "train")
    images, labels = data.images[:args.samples], data.labels[:args.samples]
    params, config = parse_hyperparameters({"model": "cnn", "depth": 2, "filters": 32, "kernel_size": 3,
                                            "dense": "128", "batch_size": args.batch_size})
    config.input_shape = images.shape[1:]

    plain_model = fresh_model(params, config)
    plain = Timer()
    plain_model.fit(images.astype(np.float32) / 255.0, labels, batch_size=args.batch_size, epochs=args.epochs,
                    shuffle=True, verbose=0, callbacks=[plain])

    ours_model = fresh_model(params, config)
    ours = Timer()
    # The entry point's way: one dataset of every epoch's batches, one iterator for the whole run.
    dataset = make_dataset(images, labels, args.batch_size, 1.0 / 255.0, shuffle=True, seed=0,
                           epochs=(0, args.epochs))
    ours_model.fit(dataset, epochs=args.epochs, steps_per_epoch=-(-len(images) // args.batch_size), verbose=0,
                   callbacks=[ours], shuffle=False)

    steady = slice(1, None) if args.epochs > 1 else slice(None)
    plain_s = float(np.mean(plain.seconds[steady]))
    ours_s = float(np.mean(ours.seconds[steady]))
    print(f"images={len(images)} epochs={args.epochs} batch_size={args.batch_size}")
    print(f"plain model.fit(numpy): {plain_s:.2f} s/epoch  (all epochs: {[round(s, 2) for s in plain.seconds]})")
    print(f"convlab pipeline:       {ours_s:.2f} s/epoch  (all epochs: {[round(s, 2) for s in ours.seconds]})")
    print(f"ratio convlab/plain: {ours_s / plain_s:.3f}  (target <= 0.85)")


if __name__ == "__main__":
    main()
