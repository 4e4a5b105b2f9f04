"""One process of a distributed start: `python -m tests.multiworker_probe DEVICES [HOST]`.

The CPU is split into DEVICES logical devices before TensorFlow starts. With TF_CONFIG and HOST
(algo-1 is the chief) the process is one worker of MultiWorkerMirroredStrategy; without them it is
one machine whose MirroredStrategy has a replica on each logical device. A small Keras model is
built on every worker; the chief "resumes" it from a model whose weights are all 0.25 after epoch 3
(best epoch 2, best validation accuracy 0.5), and `start_across_workers` gives every worker the
chief's model and counters. Prints one JSON line: replicas, multi-worker or not, what each worker got.
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    import tensorflow as tf

    devices, host = int(argv[0]), (argv[1] if len(argv) > 1 else None)
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)

    from training import distributed

    hosts = json.loads(os.environ.get("SM_HOSTS", '["algo-1"]'))
    if host is None:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    else:
        strategy = distributed.make_strategy(hosts, host, 0)
    chief = host in (None, sorted(hosts)[0])

    import keras
    import numpy as np

    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        return model

    def load():
        saved = build()
        saved.optimizer.build(saved.trainable_variables)
        for variable in saved.variables:
            variable.assign(np.full(variable.shape, 0.25, variable.dtype))
        return saved, {"epoch": 3, "best_epoch": 2, "best_val_accuracy": 0.5}, None

    fresh = {"epoch": 0, "best_epoch": 0, "best_val_accuracy": -1.0}
    model, state, _ = distributed.start_across_workers(strategy, chief, build, load, fresh)
    # Each replica's copy of every weight: all must hold the chief's values.
    copies = [getattr(getattr(v, "value", v), "values", [getattr(v, "value", v)]) for v in model.variables]
    per_replica = sorted({float(x) for replicas in copies for copy in replicas for x in np.unique(copy.numpy())})
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "multi_worker": distributed.is_multi_worker(strategy),
        "weights": per_replica,
        "state": {k: state[k] for k in ("epoch", "best_epoch", "best_val_accuracy")},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
