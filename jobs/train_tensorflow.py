"""Train a digit classifier with TensorFlow (Keras, MultiWorkerMirroredStrategy) on raykube.

    python jobs/train_tensorflow.py --cluster local
    ray job submit --working-dir jobs -- python train_tensorflow.py

Variables are mirrored across workers and gradients all-reduced each step, so the replicas stay
identical (checked at the end by comparing weight fingerprints across workers).
"""

from __future__ import annotations

from typing import Any

from raykube import worker

from common import final_summary, run_example
from digits import NUM_CLASSES, NUM_FEATURES, load_digits_split


def build_model() -> Any:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(NUM_FEATURES,)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(NUM_CLASSES),
    ])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(0.01),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    X_train, y_train, X_test, y_test = load_digits_split()
    ctx = worker.context()
    X, y = worker.shard(X_train, y_train)
    batch = config["batch_size"]
    # Every worker must run the same number of steps: the collective waits for all of them.
    steps = (len(X_train) // ctx.world_size) // batch
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = (tf.data.Dataset.from_tensor_slices((X, y)).shuffle(len(X), seed=ctx.rank)
            .repeat().batch(batch * ctx.world_size).with_options(options))
    model = worker.prepare(build_model)
    start = 0
    state = worker.restore()
    if state:
        model.set_weights(state["weights"])
        start = state["epoch"] + 1

    class Report(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logits = self.model.predict(X_test, verbose=0)
            accuracy = float((np.argmax(logits, axis=1) == y_test).mean())
            worker.report(
                {"epoch": epoch, "loss": float((logs or {}).get("loss", 0.0)),
                 "test_accuracy": accuracy},
                state={"epoch": epoch, "weights": self.model.get_weights()},
            )

    model.fit(data, epochs=config["epochs"], initial_epoch=start, steps_per_epoch=steps,
              callbacks=[Report()], verbose=0)
    accuracy = float((np.argmax(model.predict(X_test, verbose=0), axis=1) == y_test).mean())
    return final_summary(model.get_weights(), accuracy, start)


def main() -> None:
    run_example("tensorflow", train_loop, "TensorFlow MultiWorkerMirroredStrategy on sklearn "
                "digits", {"batch_size": 16})


if __name__ == "__main__":
    main()
