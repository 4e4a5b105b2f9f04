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
