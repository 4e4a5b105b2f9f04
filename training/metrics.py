"""SageMaker MetricDefinitions for the entry point's log line (see callbacks.metric_line).

    convlab-metrics epoch=3 loss=0.3012 accuracy=0.8901 val_loss=0.3120 val_accuracy=0.8850 seconds=10.4100
    convlab-metrics final=test test_loss=0.3301 test_accuracy=0.8812 val_accuracy=0.8850 params=421642
"""
NUMBER = r"([0-9.eE+-]+|nan)"

METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"convlab-metrics epoch=\d+ loss=" + NUMBER},
    {"Name": "train:accuracy", "Regex": r"convlab-metrics epoch=\d+ loss=\S+ accuracy=" + NUMBER},
    {"Name": "validation:loss", "Regex": r"convlab-metrics epoch=\d+ .*val_loss=" + NUMBER},
    {"Name": "validation:accuracy", "Regex": r"convlab-metrics epoch=\d+ .*val_accuracy=" + NUMBER},
    {"Name": "epoch:seconds", "Regex": r"convlab-metrics epoch=\d+ .*seconds=" + NUMBER},
    {"Name": "test:loss", "Regex": r"convlab-metrics final=test test_loss=" + NUMBER},
    {"Name": "test:accuracy", "Regex": r"convlab-metrics final=test .*test_accuracy=" + NUMBER},
]

# A test accuracy less than this share of the way from chance to 1.0 counts as "at or near chance".
NEAR_CHANCE = 0.1


def chance_accuracy(confusion_matrix) -> float:
    """What always answering the most common test class scores (1/K on a balanced test set)."""
    counts = [sum(row) for row in confusion_matrix]
    return max(counts) / sum(counts) if sum(counts) else 0.0


def near_chance(accuracy: float, confusion_matrix) -> bool:
    chance = chance_accuracy(confusion_matrix)
    return accuracy < chance + NEAR_CHANCE * (1.0 - chance)


def chance_advice(metrics: dict, batch_size: int) -> str | None:
    """A warning for a run that ended at or near chance accuracy, with what to try; None otherwise."""
    matrix = metrics["confusion_matrix"]
    accuracy = metrics["test_accuracy"]
    if not near_chance(accuracy, matrix):
        return None
    steps_per_epoch = -(-metrics["num_train"] // batch_size)
    epochs = metrics["epochs_completed"]
    smaller = max(8, batch_size // 4)
    more = max(2 * epochs, -(-500 // max(1, -(-metrics["num_train"] // smaller))))
    return (f"test accuracy {accuracy:.3f} is at or near chance ({chance_accuracy(matrix):.3f}, what always "
            f"answering the most common of the {len(matrix)} classes scores): the model learned little. "
            f"It took {steps_per_epoch} optimizer steps per epoch ({metrics['num_train']} training images at "
            f"batch_size {batch_size}), {steps_per_epoch * epochs} in all. Try more epochs (--epochs {more}), "
            f"a smaller batch (--batch_size {smaller}), or more images per class")
