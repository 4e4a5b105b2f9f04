"""The augment hyperparameter measured both ways: the base CNN trained on a Fashion-MNIST subset with
each augment setting (same seed, same subset), then its accuracy through the handler on plain test PNGs
and on their photo-like JPEGs (convlab.photos.accuracy_plain_vs_photo).

    python bench/photo_augment.py [--settings none,photo] [--train 12000] [--epochs 4] [--images 1000]
                                  [--work-dir work/photo-augment]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE_CNN = {"model": "cnn", "depth": 2, "filters": 32, "kernel_size": 3, "dense": "128", "dropout": 0.25,
            "seed": 1, "verbose": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="none,photo")
    parser.add_argument("--train", type=int, default=12000, help="training images (a stratified subset)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=1000, help="test images measured")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo-like images")
    parser.add_argument("--work-dir", type=Path, default=Path("work/photo-augment"))
    args = parser.parse_args(argv)
    from convlab.photos import accuracy_plain_vs_photo
    from training.data import find_fashion_mnist, read_channel
    from training.train import configure_logging, run_training

    configure_logging()
    data = find_fashion_mnist()
    test = read_channel(data, "test")
    rows = {}
    for setting in args.settings.split(","):
        model_dir = args.work_dir / f"augment-{setting}"
        hps = dict(BASE_CNN, augment=setting, epochs=args.epochs, max_train_samples=args.train)
        metrics = run_training(hps, {"train": str(data)}, str(model_dir))
        rows[setting] = {"test_accuracy": metrics["test_accuracy"],
                         **accuracy_plain_vs_photo(model_dir, test.images[:args.images], test.labels[:args.images],
                                                   args.seed)}
        print(json.dumps({"augment": setting, **rows[setting]}), flush=True)
    print(f"augment | test accuracy (all {len(test.labels)}) | plain PNG | photo-like JPEG | ratio | unmapped")
    for setting, row in rows.items():
        print(f"{setting} | {row['test_accuracy']:.4f} | {row['plain']:.4f} | {row['photo']:.4f} | "
              f"{row['photo'] / row['plain']:.3f} | {row['photo_unmapped']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
