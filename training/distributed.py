"""Training on several machines: TF_CONFIG, the strategy, and the training loop used across workers.

MultiWorkerMirroredStrategy must exist before any TensorFlow op runs in the process, so
`make_strategy` is the first TensorFlow call of a run. Keras' `model.fit` cannot feed a
multi-worker distributed dataset (keras-team/keras#20585), so several workers train with
`fit_distributed`: a GradientTape step run by `strategy.run` on every replica, with the same
callbacks, metric lines and checkpoints as `model.fit` on one machine.
"""
from __future__ import annotations

import json
import logging
import os

from .environment import is_chief, tf_config

log = logging.getLogger("convlab.train")

REASON_BYTES = 2048  # the longest failure reason the chief sends the other workers


class ChiefFailed(RuntimeError):
    """The chief failed at a step every worker waits for; the message carries the chief's reason."""


def cluster_config(hosts: list[str], current_host: str) -> dict:
    """TF_CONFIG for this host: the one already in the environment (checked against the host list),
    else SageMaker's hosts on port 2222."""
    ordered = sorted(hosts)
    if current_host not in ordered:
        raise ValueError(f"SM_CURRENT_HOST {current_host!r} is not in SM_HOSTS {ordered}")
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return tf_config(hosts, current_host)
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG: expected {{'cluster': {{'worker': [...]}}, 'task': {{...}}}}, "
                         f"got {raw!r} ({exc})") from None
    if set(config["cluster"]) != {"worker"} or task.get("type") != "worker":
        raise ValueError(f"TF_CONFIG: only 'worker' tasks are supported (the first worker is the chief), got {raw}")
    if len(workers) != len(ordered) or task.get("index") != ordered.index(current_host):
        raise ValueError(f"TF_CONFIG: worker {task.get('index')} of {len(workers)} does not match host "
                         f"{current_host!r} of SM_HOSTS {ordered} (worker i must be the i-th host in sorted order)")
    return config


def make_strategy(hosts: list[str], current_host: str, num_gpus: int):
    """MultiWorkerMirroredStrategy across hosts, MirroredStrategy across local GPUs, else the default."""
    import tensorflow as tf

    if len(hosts) > 1:
        config = cluster_config(hosts, current_host)
        os.environ["TF_CONFIG"] = json.dumps(config)
        log.info("worker %d of %s (%s)", config["task"]["index"], config["cluster"]["worker"],
                 "chief" if is_chief(hosts, current_host) else "not the chief: writes no model")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_gpus > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_count(strategy) -> int:
    """Workers (hosts) training together: from the strategy's cluster resolver, which single-machine
    strategies do not have."""
    resolver = strategy.cluster_resolver
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs) or 1


def is_multi_worker(strategy) -> bool:
    return worker_count(strategy) > 1


def _labels(targets):
    import tensorflow as tf

    return targets if targets.shape.rank == 1 else tf.argmax(targets, axis=-1, output_type=tf.int32)


def _finite_everywhere(context, gradients: list) -> list:
    """The gradients, made all non-finite on every replica when any replica's are not.

    A LossScaleOptimizer skips a step whose gradients overflowed, judging each replica's own
    gradients; without this, one worker would skip the step while the others wait for it in the
    gradient all-reduce."""
    import tensorflow as tf

    present = [g for g in gradients if g is not None]
    if not present:
        return gradients
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])
    overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(overflowed > 0, float("nan"), 0.0)
    return [None if g is None else g + tf.cast(poison, g.dtype) for g in gradients]


def _step_functions(strategy, model):
    """tf.functions for one training step and one evaluation step over all replicas; each returns
    the global (loss sum, correct predictions, examples) of the batch."""
    import keras
    import tensorflow as tf

    loss_fn, optimizer = model.loss, model.optimizer
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)  # mixed_float16
    sum_ = tf.distribute.ReduceOp.SUM

    def counts(targets, outputs, losses):
        hits = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32), tf.cast(_labels(targets), tf.int32))
        return tf.reduce_sum(losses), tf.reduce_sum(tf.cast(hits, tf.float32)), tf.cast(tf.shape(losses)[0], tf.float32)

    def train_replica(images, targets):
        context = tf.distribute.get_replica_context()
        # The mean over the whole global batch (a last partial batch included), as fit() computes it.
        global_size = context.all_reduce(sum_, tf.cast(tf.shape(images)[0], tf.float32))
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            losses = loss_fn.call(targets, outputs)
            loss = tf.reduce_sum(losses) / tf.maximum(global_size, 1.0)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            # Under mixed_float16 Keras' optimizer is a LossScaleOptimizer: it divides the gradients
            # by the loss scale it multiplies in here, as model.fit's train step does.
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        if scales_loss:
            gradients = _finite_everywhere(context, gradients)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return counts(targets, outputs, losses)

    def eval_replica(images, targets):
        outputs = model(images, training=False)
        return counts(targets, outputs, loss_fn.call(targets, outputs))

    def reduced(replica_fn):
        @tf.function
        def step(batch):
            values = strategy.run(replica_fn, args=batch)
            return [strategy.reduce(sum_, value, axis=None) for value in values]
        return step

    return reduced(train_replica), reduced(eval_replica)


def fit_distributed(strategy, model, train_ds, val_ds, *, epochs: int, initial_epoch: int,
                    steps_per_epoch: int, callbacks: list) -> None:
    """The part of model.fit convlab uses, for MultiWorkerMirroredStrategy: `steps_per_epoch` steps
    an epoch from one iterator over `train_ds`, then a pass over `val_ds`; callbacks get
    on_epoch_begin/on_epoch_end with loss, accuracy, val_loss, val_accuracy and may stop training."""
    import numpy as np

    if not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    train_step, eval_step = _step_functions(strategy, model)
    batches = iter(strategy.experimental_distribute_dataset(train_ds))
    val_batches = strategy.experimental_distribute_dataset(val_ds)
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    model.stop_training = False
    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        totals = np.zeros(3)
        for _ in range(steps_per_epoch):
            totals += [float(v) for v in train_step(next(batches))]
        val_totals = np.zeros(3)
        for batch in val_batches:
            val_totals += [float(v) for v in eval_step(batch)]
        seen = max(val_totals[2], 1)
        logs = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
                "val_loss": val_totals[0] / seen, "val_accuracy": val_totals[1] / seen}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break


def predict_local(model, dataset):
    """Outputs of the model over a dataset on this worker alone (no collective ops)."""
    import numpy as np
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False))
    return np.concatenate([forward(images).numpy() for images, _ in dataset])


def start_across_workers(strategy, chief: bool, build, load, fresh_state: dict):
    """(model, state, best weights) identical on every worker, from the chief's checkpoint if it has one.

    Creating a variable under MultiWorkerMirroredStrategy is a collective step, so every worker builds
    the same new model and optimizer; the chief alone reads the checkpoint (workers need no copy of it)
    and its weights, optimizer state and epoch counters are then broadcast to the others."""
    with strategy.scope():
        model = build()
        model.optimizer.build(model.trainable_variables)
    state, best, failure = fresh_state, None, None
    if chief:
        try:
            resumed = load()
            if resumed:
                loaded, state, best = resumed
                _copy_variables(loaded.variables + loaded.optimizer.variables,
                                model.variables + model.optimizer.variables)
        except Exception as exc:  # every worker waits for the chief's model: tell them why there is none
            failure = exc
    share_chief_failure(strategy, failure)
    counters = _broadcast(strategy, [[state["epoch"], state["best_epoch"], state["best_val_accuracy"]]]
                          + [v.numpy() for v in model.variables + model.optimizer.variables])
    for variable, value in zip(model.variables + model.optimizer.variables, counters[1:]):
        variable.assign(value.astype(variable.dtype))
    epoch, best_epoch, best_val_accuracy = counters[0]
    if not chief and epoch:
        log.info("resuming with the chief after epoch %d", epoch)
        state = dict(state, epoch=int(epoch), best_epoch=int(best_epoch), best_val_accuracy=float(best_val_accuracy),
                     history={}, seconds_per_epoch=[])
    return model, state, best


def _copy_variables(sources: list, targets: list) -> None:
    if [tuple(v.shape) for v in sources] != [tuple(v.shape) for v in targets]:
        raise ValueError("checkpoint: its model and optimizer variables do not match the configured model")
    for source, target in zip(sources, targets):
        target.assign(source.numpy())


def _broadcast(strategy, values: list) -> list:
    """The chief's values on every worker.

    A sum over all replicas to which only replica 0 of the sync group adds (the first local replica of
    the chief, worker 0); every other replica adds zeros, so the result is the same whatever the
    number of replicas on each worker."""
    import numpy as np
    import tensorflow as tf

    tensors = [tf.constant(np.asarray(value, np.float64)) for value in values]

    @tf.function
    def exchange():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return [context.all_reduce(tf.distribute.ReduceOp.SUM, tf.where(first, tensor, tf.zeros_like(tensor)))
                for tensor in tensors]

    results = strategy.run(exchange)
    return [strategy.experimental_local_results(result)[0].numpy() for result in results]


def share_chief_failure(strategy, failure: BaseException | None) -> None:
    """A step every worker takes together, in which the chief tells the others whether it failed.

    The chief raises its own `failure`; when the chief failed, every other worker raises ChiefFailed
    with the chief's reason, instead of waiting for the chief at the next collective step."""
    import numpy as np

    reason = b"" if failure is None else f"{type(failure).__name__}: {failure}".encode()[:REASON_BYTES]
    message = np.zeros(REASON_BYTES + 2)
    message[:2] = failure is not None, len(reason)
    message[2:2 + len(reason)] = np.frombuffer(reason, np.uint8)
    (shared,) = _broadcast(strategy, [message])
    if failure is not None:
        raise failure
    if shared[0]:
        text = bytes(shared[2:2 + int(shared[1])].astype(np.uint8)).decode(errors="replace")
        raise ChiefFailed(f"the chief (worker 0) failed: {text}")


def barrier(strategy, failure: BaseException | None = None) -> None:
    """Every worker waits here until all have arrived, and fails with the chief's reason if the chief
    failed (`failure`, on the chief) before arriving.

    At the end of a run it keeps workers alive until the chief has written the model: SageMaker's
    LOCAL_CONTAINER mode (docker-compose --abort-on-container-exit) stops every container as soon as
    the first one exits, which would otherwise cut the chief's export short."""
    share_chief_failure(strategy, failure)
    log.info("all %d workers finished", worker_count(strategy))
