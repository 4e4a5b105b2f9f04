"""The tf.data input pipeline: uint8 images stay uint8 in memory, batches are gathered by index,
scaled and (optionally) augmented as whole batches.

The training dataset holds the batches of every epoch still to run, and fit() is given
steps_per_epoch, so one iterator lives for the whole run: a new tf.data iterator per epoch (what fit()
on numpy arrays does) intermittently costs seconds at the start of an epoch on this kind of machine
(bench/train_throughput.py). Epoch k's order is a stateless shuffle seeded by (seed, k): a run resumed
after epoch k-1 sees exactly the order the uninterrupted run would have seen.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


class Augmenter:
    """Per image. "light": a random shift of up to 2 pixels and a horizontal flip. "photo": what a
    photo mapped by the server (inference/photo.py) still differs by: a horizontal flip, a shift of up
    to 3 pixels, a zoom of up to 15 % in or out, and the object's contrast scaled by 0.6..1.2 and
    lifted by up to 0.06 (a background not quite black, an object dimmer or brighter than the
    data set's)."""

    def __init__(self, height: int, width: int, seed: int, kind: str = "light"):
        import keras

        self.kind, self.seed = kind, seed
        shift = 3 if kind == "photo" else 2
        self.layers = [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(shift / height, shift / width, fill_mode="constant", seed=seed + 1),
        ]
        if kind == "photo":
            self.layers.append(keras.layers.RandomZoom((-0.15, 0.15), fill_mode="constant", seed=seed + 2))

    def __call__(self, images, labels):
        for layer in self.layers:
            images = layer(images, training=True)
        if self.kind == "photo":
            count = tf.shape(images)[0]
            gain = tf.random.uniform([count, 1, 1, 1], 0.6, 1.2, seed=self.seed + 3)
            lift = tf.random.uniform([count, 1, 1, 1], 0.0, 0.06, seed=self.seed + 4)
            images = tf.clip_by_value(images * gain + lift, 0.0, 1.0)
        return images, labels


def epoch_order(count: int, seed: int, epoch: int) -> tf.Tensor:
    """The order of the `count` training examples in epoch `epoch` (1-based): depends on nothing else."""
    return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                    seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]))


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, rescale: float, *,
                 shuffle: bool = False, seed: int = 0, augment: str | None = None,
                 epochs: tuple[int, int] | None = None) -> tf.data.Dataset:
    """Batches of (float32 images * rescale, int labels) from uint8 arrays (N, H, W, C).

    With epochs=(done, total) the batches of epochs done+1 .. total follow each other, each epoch in
    its own order (epoch_order with shuffle, else in sequence): pass fit() steps_per_epoch.
    `augment` names an Augmenter kind ("light", "photo"); None or "none" leaves the images as they are.
    """
    count = len(images)
    pixels = tf.constant(images)
    targets = tf.constant(labels.astype(np.int32))

    def gather(index):
        return tf.cast(tf.gather(pixels, index), tf.float32) * rescale, tf.gather(targets, index)

    def one_epoch(epoch):
        order = epoch_order(count, seed, epoch) if shuffle else tf.range(count, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    if epochs is not None:
        indices = tf.data.Dataset.range(epochs[0] + 1, epochs[1] + 1).flat_map(one_epoch)
    else:
        indices = one_epoch(tf.constant(1, tf.int64))
    dataset = indices.map(gather, num_parallel_calls=AUTOTUNE)
    if augment and augment != "none":
        dataset = dataset.map(Augmenter(images.shape[1], images.shape[2], seed, augment), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
