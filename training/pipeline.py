"""The tf.data input pipeline: uint8 images stay uint8 in memory, batches are gathered by index,
scaled and (optionally) augmented as whole batches.

The training dataset repeats, and fit() is given steps_per_epoch, so one iterator lives for the
whole run: a new tf.data iterator per epoch (what fit() on numpy arrays does) intermittently costs
seconds at the start of an epoch on this kind of machine (bench/train_throughput.py).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


class Augmenter:
    """Light augmentation: a random shift of up to 2 pixels and a horizontal flip, per image."""

    def __init__(self, height: int, width: int, seed: int):
        import keras

        self.layers = [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(2 / height, 2 / width, fill_mode="constant", seed=seed + 1),
        ]

    def __call__(self, images, labels):
        for layer in self.layers:
            images = layer(images, training=True)
        return images, labels


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, rescale: float, *,
                 shuffle: bool = False, seed: int = 0, augment: bool = False,
                 repeat: bool = False) -> tf.data.Dataset:
    """Batches of (float32 images * rescale, int labels) from uint8 arrays (N, H, W, C).

    With repeat=True the batches go on forever, reshuffled every pass: pass fit() steps_per_epoch.
    """
    count = len(images)
    pixels = tf.constant(images)
    targets = tf.constant(labels.astype(np.int32))

    def gather(index):
        return tf.cast(tf.gather(pixels, index), tf.float32) * rescale, tf.gather(targets, index)

    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size)
    if repeat:
        indices = indices.repeat()
    dataset = indices.map(gather, num_parallel_calls=AUTOTUNE)
    if augment:
        dataset = dataset.map(Augmenter(images.shape[1], images.shape[2], seed), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
