"""Ray's fake multi-node provider, with each simulated pod in a folder of its own and the
memory of its group.

Ray's ``fake_multinode`` provider starts every worker node in the head's temp folder, so all
nodes share one session folder. On a real cluster each pod has its own, and Ray relies on it:

- each node's runtime-env agent unpacks a job's ``working_dir`` into the session folder and,
  not finding it in its own cache, deletes and unpacks it again: on a shared folder that
  deletes the directory a running driver stands in (``ray job submit`` of a torch job then
  dies in ``import torch`` with "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so",
  because oneMKL's loader calls ``getcwd``, which fails);
- each node's log monitor forwards every worker log it finds in the session's log folder, so
  on a shared folder a driver prints each line of a remote task once per node.

This provider gives each node it starts its own temp folder (``<nodes_dir>/<node id>``), as a
pod's own ``/tmp/ray`` is. The autoscaler loads it as an ``external`` provider; everything else
is Ray's provider unchanged.

Ray's provider keeps its nodes in the autoscaler's memory, so a head that is started again
(GCS fault tolerance) would know none of the workers that kept running, start new ones under
ids already taken, and never remove the old ones. This one writes each node's tags into its
folder and, when it starts, takes back every node whose processes still run, as KubeRay's
operator finds its pods again after a restart.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import ray._private.parameter as ray_parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import TAG_RAY_NODE_NAME

from raykube.backends.local.autoscaler_config import NODES_DIR_KEY
from raykube.backends.local.processes import (
    MARKER_ENV,
    NODE_ID_VARIABLE,
    stop_processes,
    worker_node_ids,
)

_STARTING = threading.Lock()
"""Node launches run in threads; one at a time may swap the parameters class."""


def node_folder(nodes_dir: str | Path, node_id: str) -> Path:
    """The temp folder of the worker node ``node_id``: short, since Unix socket paths under
    it must stay under 108 bytes."""
    return Path(nodes_dir) / node_id.lstrip("f")


TAGS_FILE = "node-tags.json"
"""Where a node's folder keeps the autoscaler's tags of that node (see the module docstring)."""


def _params_in(nodes_dir: str) -> type[ray_parameter.RayParams]:
    """Ray's node parameters, with ``temp_dir`` set to the starting node's own folder."""
    base = ray_parameter.RayParams

    class NodeParams(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            node_id = (kwargs.get("env_vars") or {})[NODE_ID_VARIABLE]
            folder = node_folder(nodes_dir, node_id)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            kwargs.setdefault("temp_dir", str(folder))
            # Ray's provider passes every resource but CPU, GPU and object store as custom
            # ones; memory is a node parameter of its own (`ray start --memory`).
            resources = dict(kwargs.get("resources") or {})
            if "memory" in resources:
                kwargs["memory"] = int(resources.pop("memory"))
                kwargs["resources"] = resources
            super().__init__(**kwargs)

    return NodeParams


class PodFolderNodeProvider(FakeMultiNodeProvider):  # type: ignore[misc]
    """``fake_multinode`` whose nodes each keep their own temp and session folder, and outlive
    the autoscaler that started them."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        # Ray's provider insists on RAY_FAKE_CLUSTER, which would also make `ray start --head`
        # give the head a fixed node id: raykube gives the head its own (see
        # processes.HEAD_NODE_ID_PREFIX) and sets the variable here, for the provider only.
        os.environ.setdefault("RAY_FAKE_CLUSTER", "1")
        super().__init__(provider_config, cluster_name)
        self._adopt_running_nodes()

    def _adopt_running_nodes(self) -> None:
        """Take back the nodes an earlier autoscaler of this cluster started that still run;
        new node ids continue after theirs."""
        marker = os.environ.get(MARKER_ENV)
        if not marker:
            return
        running = worker_node_ids(marker)
        for tags_file in Path(self.provider_config[NODES_DIR_KEY]).glob(f"*/{TAGS_FILE}"):
            saved = json.loads(tags_file.read_text())
            if saved["node_id"] in running:
                self._nodes[saved["node_id"]] = {"tags": saved["tags"], "node": None}
                self._next_node_id = max(self._next_node_id, saved["number"])

    def _terminate_node(self, node: dict[str, Any]) -> None:
        if node.get("node") is not None:
            super()._terminate_node(node)
            return
        # A node taken back from an earlier autoscaler: no Ray handle, only its processes.
        stop_processes(os.environ[MARKER_ENV], node=node["tags"][TAG_RAY_NODE_NAME])

    def _create_node_with_resources_and_labels(
        self, node_config: Any, tags: Any, count: int, resources: Any, labels: Any
    ) -> None:
        nodes_dir = self.provider_config[NODES_DIR_KEY]
        with _STARTING:
            original = ray_parameter.RayParams
            ray_parameter.RayParams = _params_in(nodes_dir)
            before = set(self._nodes)
            try:
                super()._create_node_with_resources_and_labels(
                    node_config, tags, count, resources, labels
                )
            finally:
                ray_parameter.RayParams = original
            for node_id in set(self._nodes) - before:
                node_folder(nodes_dir, node_id).joinpath(TAGS_FILE).write_text(json.dumps({
                    "node_id": node_id, "number": self._next_node_id,
                    "tags": self._nodes[node_id]["tags"],
                }))
