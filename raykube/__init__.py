"""raykube: describe a Ray cluster once, run it locally or on Kubernetes (KubeRay), and train,
serve and submit jobs on it.

The public surface is what ``__all__`` names; everything else is internal.
"""

from raykube.batch import BatchResult, batch_predict
from raykube.cluster import Cluster, get, list_clusters, logs, up
from raykube.errors import (
    BackendError,
    ClusterError,
    ClusterExists,
    ClusterNotFound,
    DataError,
    JobError,
    JobFailed,
    PortInUse,
    RaykubeError,
    ReadyTimeout,
    ScaleError,
    ServeError,
    SpecError,
    TrainError,
)
from raykube.connection import Connection, connect
from raykube.monitoring import write_monitoring
from raykube.serving.rayservice import apply_rayservice
from raykube.serving.service import Service, deploy, get_service
from raykube.specs.batch import BatchPredictSpec, load_batch_spec
from raykube.specs.cluster import ClusterSpec, load_spec
from raykube.specs.serve import ServeSpec, load_serve_spec
from raykube.submission.jobs import Job, submit
from raykube.submission.rayjob import apply_rayjob
from raykube.target import Target, resolve
from raykube.training.api import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BatchPredictSpec",
    "BatchResult",
    "Cluster",
    "ClusterError",
    "ClusterExists",
    "ClusterNotFound",
    "ClusterSpec",
    "Connection",
    "DataError",
    "Job",
    "JobError",
    "JobFailed",
    "PortInUse",
    "RaykubeError",
    "ReadyTimeout",
    "ScaleError",
    "ServeError",
    "ServeSpec",
    "Service",
    "SpecError",
    "Target",
    "TrainError",
    "TrainResult",
    "apply_rayjob",
    "apply_rayservice",
    "batch_predict",
    "connect",
    "deploy",
    "get",
    "get_service",
    "list_clusters",
    "load_batch_spec",
    "logs",
    "load_serve_spec",
    "load_spec",
    "resolve",
    "submit",
    "train",
    "up",
    "write_monitoring",
]
