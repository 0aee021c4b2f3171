"""TensorFlow: ``MultiWorkerMirroredStrategy`` through Ray Train's ``TensorflowTrainer``.

TensorFlow 2.21 ships Keras 3, and Ray's TF backend asks for Keras 2 (``tf_keras``) by setting
``TF_USE_LEGACY_KERAS`` when the run starts; but Ray's own modules import TensorFlow earlier in
the worker, which then binds ``tf.keras`` to Keras 3. Setting it in the workers' environment
from process start is stable, so it is this framework's ``worker_env``.
"""

from __future__ import annotations

from typing import Any

from raykube.frameworks.base import Framework, TrainerRequest, build, with_worker_env

_strategy: Any = None
"""This process's ``MultiWorkerMirroredStrategy``: made once per worker, before any TF op."""


def strategy() -> Any:
    """This run's ``MultiWorkerMirroredStrategy`` (for custom loops: ``.run``)."""
    if _strategy is None:
        raise RuntimeError("no TensorFlow strategy: call this inside a framework='tensorflow' run")
    return _strategy


class TensorFlow(Framework):
    """TensorFlow with Keras 2 (``framework="tensorflow"``)."""

    name = "tensorflow"
    modules = ("tensorflow", "tf_keras")
    install = "'raykube[tensorflow]'"
    worker_env = {"TF_USE_LEGACY_KERAS": "1"}

    def make_trainer(self, request: TrainerRequest) -> Any:
        self.check_installed()
        from ray.train.tensorflow import TensorflowTrainer

        return TensorflowTrainer(
            request.train_fn,
            train_loop_config=request.config,
            scaling_config=request.scaling,
            run_config=with_worker_env(request.run, self.worker_env),
            datasets=dict(request.datasets) or None,
        )

    def tensors(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """TensorFlow tensors."""
        import tensorflow as tf

        return {name: tf.convert_to_tensor(array) for name, array in arrays.items()}

    def on_worker_start(self) -> None:
        """The strategy must exist before any TF op runs in the process, so it is made here,
        before the user's code can build a dataset."""
        global _strategy
        if _strategy is None:
            import tensorflow as tf

            _strategy = tf.distribute.MultiWorkerMirroredStrategy()

    def prepare(self, model_or_builder: Any) -> Any:
        """Built (and compiled, by the builder) inside the strategy's scope, where its
        variables must be created."""
        if _strategy is None:
            return build(model_or_builder)
        with _strategy.scope():
            return build(model_or_builder)

    def keras_dataset(self, generate: Any, width: int, label_dtype: Any) -> Any:
        """A ``tf.data.Dataset`` over ``generate()``'s ``(features, label)`` batches, with
        TensorFlow's auto-sharding off: the batches are this worker's share already."""
        import tensorflow as tf

        dataset = tf.data.Dataset.from_generator(generate, output_signature=(
            tf.TensorSpec((None, width), tf.float32), tf.TensorSpec((None,), label_dtype)))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)
