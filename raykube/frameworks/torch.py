"""PyTorch: DistributedDataParallel through Ray Train's ``TorchTrainer``.

raykube picks the device itself: CUDA and NCCL only where Ray gave a worker a GPU that CUDA sees
(logical GPUs on a CPU-only machine keep the CPU and gloo).
"""

from __future__ import annotations

from typing import Any

from raykube.frameworks.base import Framework, TrainerRequest, build, world_size


def has_gpu() -> bool:
    """Whether this worker was given a real GPU: Ray assigned it one and CUDA sees it.

    A worker that asked for no GPU can still see the machine's GPUs (Ray 2.60 leaves
    ``CUDA_VISIBLE_DEVICES`` alone for zero-GPU workers), so CUDA being available is not enough;
    seen on an H200 machine, where a CPU-only worker otherwise trained on the GPU.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    import ray

    return bool(ray.get_gpu_ids())


def device() -> Any:
    """The torch device of this worker (its GPU where it was given a real one, else CPU)."""
    import torch

    if has_gpu():
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cpu")


class Torch(Framework):
    """PyTorch (``framework="torch"``)."""

    name = "torch"
    modules = ("torch",)
    install = "'raykube[torch]'"

    def cuda_on_workers(self, gpus: float, accelerator_type: str | None) -> bool:
        """Asked of a worker placed as the run's would be (a tiny probe task): logical GPUs on a
        CPU-only machine keep the CPU and gloo."""
        import ray

        extra = {f"accelerator_type:{accelerator_type}": 0.001} if accelerator_type else {}

        @ray.remote(num_cpus=0, num_gpus=gpus, resources=extra)
        def probe() -> bool:
            try:
                import torch

                return bool(torch.cuda.is_available())
            except ImportError:
                return False

        return bool(ray.get(probe.remote(), timeout=300))

    def make_trainer(self, request: TrainerRequest) -> Any:
        self.check_installed()
        from ray.train.torch import TorchConfig, TorchTrainer

        return TorchTrainer(
            request.train_fn,
            train_loop_config=request.config,
            torch_config=TorchConfig(backend="nccl" if request.use_cuda else "gloo"),
            scaling_config=request.scaling,
            run_config=request.run,
            datasets=dict(request.datasets) or None,
        )

    def tensors(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Torch tensors on this worker's device (its GPU where it has a real one)."""
        import torch

        where = device()
        return {name: torch.from_numpy(array).to(where) for name, array in arrays.items()}

    def prepare(self, model_or_builder: Any) -> Any:
        """Wrapped in DistributedDataParallel (NCCL on a real GPU, else gloo on the CPU) and
        moved to the worker's device."""
        import torch

        model = build(model_or_builder)
        if has_gpu():
            import ray.train.torch

            # Moves the model to this worker's GPU, and wraps it in DDP (NCCL) with peers.
            return ray.train.torch.prepare_model(model)
        if world_size() > 1:
            # Logical GPUs (or none): DDP over gloo on the CPU, as the same job would run anywhere.
            return torch.nn.parallel.DistributedDataParallel(model)
        return model
