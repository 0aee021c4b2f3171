"""The embedded backend: a real multi-node Ray cluster on this machine.

The head is ``ray start --head`` with an autoscaling config; every worker replica is a raylet
that Ray's own autoscaler starts through the ``fake_multinode`` provider, one node type per
worker group, carrying that group's resources and the ``raykube.io/group`` label. Autoscaling
is therefore Ray's real autoscaler reacting to real demand; only the "machines" are processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from raykube.auth import client_env, ensure_token
from raykube.backends.base import (
    Capabilities,
    ClusterStatus,
    ClusterSummary,
    Endpoints,
    GroupStatus,
    NodeStatus,
    ScrapeTargets,
    node_matches,
)
from raykube.backends.local.autoscaler_config import (
    DEFAULT_OBJECT_STORE_BYTES,
    build_autoscaler_config,
    unsupported_worker_params,
)
from raykube.backends.local.environment import head_environment
from raykube.backends.local.ports import pick_free_ports, require_free
from raykube.backends.local.processes import (
    MARKER_ENV,
    NODE_ID_VARIABLE,
    find_head_processes,
    find_processes,
    new_head_node_id,
    stop_processes,
)
from raykube.backends.local.redis import check_redis, forget_cluster_state
from raykube.backends.local.state import (
    LocalRecord,
    Ports,
    known_names,
    ray_temp_dir,
    kept_logs_dir,
    live_log_dirs,
    live_metrics_dir,
    remove_state,
    storage_dir,
)
from raykube.dashboard import DashboardClient
from raykube.errors import (
    BackendError,
    ClusterExists,
    ClusterNotFound,
    RaykubeError,
    ScaleError,
    SpecError,
)
from raykube.private import make_private_dir, why_not_private, write_private
from raykube.progress import Progress
from raykube.render.serve_config import SERVE_FAST_PATH_ENV
from raykube.specs.cluster import (
    GROUP_LABEL,
    SPEC_ENV,
    ClusterSpec,
    StorageSpec,
    check_scale,
    parse_spec,
)
from raykube.waiting import wait_for

CAPABILITIES = Capabilities(
    shares_driver_filesystem=True,
    runs_host_python_envs=True,
    single_node_ip=True,
    serve_proxy_location="HeadOnly",
    serve_host="127.0.0.1",
    direct_ports=True,
    service_clusters=False,
)
"""Simulated nodes are processes of this machine: its folders, its interpreters, one IP."""


# rayStartParams of the head that name a port, with the role used in messages.
_PINNABLE_PORTS = {
    "port": ("gcs", "GCS"),
    "dashboard-port": ("dashboard", "dashboard"),
    "ray-client-server-port": ("client", "Ray Client server"),
    "dashboard-agent-listen-port": ("dashboard_agent", "dashboard agent"),
    "metrics-export-port": ("metrics", "metrics endpoint"),
}
# Head rayStartParams raykube sets itself; the rest pass through to `ray start`.
_MANAGED_HEAD_PARAMS = set(_PINNABLE_PORTS) | {
    "num-cpus", "memory", "object-store-memory", "temp-dir", "autoscaling-config", "block",
    "dashboard-host", "head",
}
PROMETHEUS_DISCOVERY_FILE = "prom_metrics_service_discovery.json"
"""The file the head's dashboard keeps listing every node's metrics agent (Ray's
PROMETHEUS_SERVICE_DISCOVERY_FILE)."""
# What `ray start` prints when the head's raylet missed Ray's fixed 30 s to register.
_RAYLET_MISSED_RAYS_WAIT = "The current node timed out during startup"


def _ray_cli() -> str:
    """The `ray` executable of this Python environment."""
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


API_SERVER_ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"
"""Ray's variable naming a cluster's dashboard for its State API and Jobs SDK clients."""


def _node_ip() -> str:
    import ray.util

    return str(ray.util.get_node_ip_address())


class LocalBackend:
    """Runs clusters as processes on this machine. See the module docstring."""

    name = "local"
    capabilities = CAPABILITIES

    # ---- helpers -------------------------------------------------------------------------

    def _record(self, name: str) -> LocalRecord:
        record = LocalRecord.load(name)
        if record is None or not find_processes(record.marker):
            running = ", ".join(n for n in known_names() if self._is_running(n)) or "none"
            raise ClusterNotFound(
                f"no local cluster named {name!r} is running (running: {running})",
                "start it with `raykube up SPEC`; `raykube list` shows what runs",
            )
        return record

    def _is_running(self, name: str) -> bool:
        try:
            record = LocalRecord.load(name)
        except BackendError:  # unreadable: reported by `list`, never followed
            return False
        return record is not None and bool(find_processes(record.marker))

    @staticmethod
    def _endpoints(record: LocalRecord) -> Endpoints:
        ports = record.ports
        ha = record.survives_head_loss
        endpoints = Endpoints.at(
            "127.0.0.1",
            {"gcs": ports.gcs, "dashboard": ports.dashboard, "client": ports.client,
             "serve": ports.serve_workers if ha else ports.serve},
            gcs_host=record.node_ip, auth_token_path=record.token_path,
        )
        return replace(endpoints, serve_head_port=ports.serve) if ha else endpoints

    @staticmethod
    def _head_resources(spec: ClusterSpec) -> dict[str, float]:
        params = spec.head_group_spec.ray_start_params
        return {
            "CPU": int(params.get("num-cpus", "0")),
            "memory": spec.head_group_spec.ray_memory,
            "object_store_memory": int(
                params.get("object-store-memory", DEFAULT_OBJECT_STORE_BYTES)
            ),
        }

    def _write_autoscaler_config(self, record: LocalRecord, spec: ClusterSpec) -> None:
        config = build_autoscaler_config(
            spec,
            gcs_address=f"{record.node_ip}:{record.ports.gcs}",
            head_node_id=record.head_node_id,
            head_resources=self._head_resources(spec),
            targets=record.targets,
            nodes_dir=str(record.nodes_dir),
        )
        write_private(record.autoscaler_config_path, yaml.safe_dump(config, sort_keys=False))

    def _allocate_ports(self, spec: ClusterSpec) -> Ports:
        params = spec.head_group_spec.ray_start_params
        free = iter(pick_free_ports(9))
        chosen: dict[str, int] = {}
        for param, (field, role) in _PINNABLE_PORTS.items():
            if param in params:
                port = int(params[param])
                require_free(port, role, spec.name)
                chosen[field] = port
            else:
                chosen[field] = next(free)
        return Ports(serve=next(free), serve_workers=next(free), autoscaler_metrics=next(free),
                     dashboard_metrics=next(free), **chosen)

    def _head_command(self, record: LocalRecord, spec: ClusterSpec) -> list[str]:
        ports, head = record.ports, spec.head_group_spec
        resources = self._head_resources(spec)
        command = [
            _ray_cli(), "start", "--head",
            f"--port={ports.gcs}",
            f"--dashboard-port={ports.dashboard}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={ports.client}",
            f"--dashboard-agent-listen-port={ports.dashboard_agent}",
            f"--metrics-export-port={ports.metrics}",
            f"--temp-dir={record.temp_dir}",
            f"--num-cpus={int(resources['CPU'])}",
            f"--memory={int(resources['memory'])}",
            f"--object-store-memory={int(resources['object_store_memory'])}",
            f"--autoscaling-config={record.autoscaler_config_path}",
            "--disable-usage-stats",
        ]
        for key, value in head.ray_start_params.items():
            if key not in _MANAGED_HEAD_PARAMS:
                command.append(f"--{key}={value}")
        return command

    def _head_env(self, record: LocalRecord, spec: ClusterSpec) -> dict[str, str]:
        """The head's environment: the caller's less its credentials (see
        :mod:`~raykube.backends.local.environment`), the spec's, Ray's token settings."""
        env, _ = head_environment(os.environ, spec.head_group_spec)
        # A node's `python` is the cluster's Python, as a container image's would be, so job
        # entrypoints like `python train.py` find Ray and raykube whatever the caller's PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(client_env(record.token_path))
        env.update(
            {
                MARKER_ENV: record.marker,
                SPEC_ENV: record.spec_yaml,
                NODE_ID_VARIABLE: record.head_node_id,
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "AUTOSCALER_METRIC_PORT": str(record.ports.autoscaler_metrics),
                "DASHBOARD_METRIC_PORT": str(record.ports.dashboard_metrics),
                "RAY_USAGE_STATS_ENABLED": "0",
                # Ray code that looks for "the" cluster's State API from inside it (Ray Train
                # V2's placement-group cleaner, a job calling ray.util.state) finds this one:
                # on a machine running two local clusters its search finds both and fails.
                API_SERVER_ADDRESS_ENV: self._endpoints(record).dashboard_url,
            }
        )
        # Processes export their metrics to their node's agent every 2 s instead of Ray's
        # 10 s, so a short run's last values reach Prometheus before its workers exit
        # (raykube.worker_metrics waits for that); a caller's own setting wins.
        env.setdefault("RAY_metrics_report_interval_ms", "2000")
        for name, value in SERVE_FAST_PATH_ENV.items():  # the spec's or the caller's wins
            env.setdefault(name, value)
        options = spec.gcs_fault_tolerance_options
        if options is not None:
            # What KubeRay sets in the pods: the GCS keeps its tables in Redis under the
            # cluster's own prefix, and every process on a worker waits up to 600 s (instead
            # of 60 s) for a head that is being started again.
            env["RAY_REDIS_ADDRESS"] = options.redis_address
            env["RAY_external_storage_namespace"] = self._redis_namespace(record, spec)
            env.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "600")
            env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(record.ports.serve_workers)
        return env

    @staticmethod
    def _redis_namespace(record: LocalRecord, spec: ClusterSpec) -> str:
        """The cluster's key prefix in Redis: the spec's, else the cluster's marker (unique to
        one `up`, as KubeRay's default, the RayCluster's UID, is to one RayCluster)."""
        options = spec.gcs_fault_tolerance_options
        assert options is not None
        return options.external_storage_namespace or record.marker

    def _autoscaler_errors(self, record: LocalRecord) -> str:
        log = Path(record.temp_dir) / "session_latest" / "logs" / "monitor.err"
        try:
            lines = [line for line in log.read_text().splitlines() if line.strip()]
        except OSError:
            return ""
        return "\n".join(lines[-5:])

    def _start_head(
        self, record: LocalRecord, spec: ClusterSpec, *, timeout: float, progress: Progress
    ) -> None:
        """Run ``ray start --head``; once more if only Ray's wait for the head's raylet ran out.

        ``ray start`` gives the head's raylet a fixed 30 s to register with the GCS (not
        configurable in Ray 2.60). A busy machine can miss that: the first start after an
        install, with cold caches and every daemon importing at once on 2 cores, was seen to.
        The second attempt starts from nothing: the first one's processes are stopped first.
        Any other failure is the spec's and is reported at once.
        """
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            result = subprocess.run(
                self._head_command(record, spec), env=self._head_env(record, spec),
                capture_output=True, text=True, stdin=subprocess.DEVNULL,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            if result.returncode == 0:
                return
            output = result.stderr or result.stdout
            if attempt == 1 and _RAYLET_MISSED_RAYS_WAIT in output:
                progress.say(
                    f"cluster {spec.name!r}: the head's raylet did not register within Ray's "
                    "30 s (a busy machine); starting the head again"
                )
                stop_processes(record.marker, node=None)
                continue
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise BackendError(
                f"cluster {spec.name!r}: `ray start --head` failed (exit "
                f"{result.returncode}):\n{tail}",
                "check headGroupSpec.rayStartParams; RAYKUBE_DEBUG=1 shows more",
            )

    # ---- status --------------------------------------------------------------------------

    def _status_of(self, record: LocalRecord) -> ClusterStatus:
        spec = parse_spec(yaml.safe_load(record.spec_yaml), source=record.name)
        client = DashboardClient(self._endpoints(record).dashboard_url, record.token_path)
        try:
            raw_nodes = client.nodes()
            head_ready = any(n.get("is_head_node") and n["state"] == "ALIVE" for n in raw_nodes)
        except BackendError as exc:
            raw_nodes, head_ready, message = [], False, exc.message
        else:
            message = ""
        nodes = [
            NodeStatus(
                node_id=n["node_id"],
                group="head" if n.get("is_head_node") else (n.get("labels") or {}).get(
                    GROUP_LABEL, "?"
                ),
                alive=n["state"] == "ALIVE",
                resources={
                    k: float(v) for k, v in (n.get("resources_total") or {}).items()
                    if not k.startswith("node:")
                },
            )
            for n in raw_nodes
        ]
        alive = Counter(n.group for n in nodes if n.alive)
        groups = []
        for group in spec.worker_group_specs:
            target = record.targets.get(group.group_name)
            low, high = group.replica_bounds
            groups.append(
                GroupStatus(
                    name=group.group_name,
                    replicas=target if target is not None else alive[group.group_name],
                    min_replicas=low,
                    max_replicas=high,
                    ready=alive[group.group_name],
                )
            )
        return ClusterStatus(
            name=record.name, backend=self.name, head_ready=head_ready, groups=groups,
            nodes=nodes, endpoints=self._endpoints(record), message=message,
        )

    def _wait_for_targets(
        self, record: LocalRecord, *, timeout: float, progress: Progress
    ) -> ClusterStatus:
        last: list[ClusterStatus] = []

        def probe() -> ClusterStatus | None:
            status = self._status_of(record)
            last[:] = [status]
            if not status.head_ready:
                progress.say(f"cluster {record.name!r}: waiting for the head")
                return None
            pinned = [g for g in status.groups if record.targets.get(g.name) is not None]
            if pinned:
                progress.say(f"cluster {record.name!r}: workers joined: " + ", ".join(
                    f"{g.name} {g.ready}/{record.targets[g.name]}" for g in pinned),
                    step=(sum(min(g.ready, record.targets[g.name]) for g in pinned),
                          sum(record.targets[g.name] for g in pinned)))
            done = all(g.ready == record.targets[g.name] for g in pinned)
            return status if done else None

        def fail_on() -> RaykubeError | None:
            if not find_processes(record.marker):
                return BackendError(
                    f"cluster {record.name!r}: the head's processes exited",
                    f"see its logs: raykube logs {record.name} (kept in "
                    f"{kept_logs_dir(record.name)})",
                )
            return None

        def describe() -> str:
            if not last:
                return "no answer from the dashboard"
            short = [
                f"group {g.name!r} has {g.ready} of {record.targets[g.name]} workers"
                for g in last[0].groups
                if record.targets.get(g.name) is not None and g.ready != record.targets[g.name]
            ]
            errors = self._autoscaler_errors(record)
            text = "; ".join(short) or "head not ready"
            return text + (f"\nautoscaler log:\n{errors}" if errors else "")

        return wait_for(
            probe, timeout=timeout, what=f"cluster {record.name!r}", fail_on=fail_on,
            describe=describe,
            hint="a 1-CPU worker needs a free logical CPU; check `raykube status` and the "
            "autoscaler log in the Ray temp dir",
        )

    # ---- Backend interface ---------------------------------------------------------------

    def scrape_targets(self, name: str) -> ScrapeTargets:
        """Ray's service-discovery file in the head's session folder (it lists the head's
        autoscaler and dashboard metrics too, on the ports raykube picked)."""
        record = self._record(name)
        return ScrapeTargets(
            discovery_file=str(Path(record.temp_dir) / "session_latest"
                               / PROMETHEUS_DISCOVERY_FILE),
            ray_dashboards=str(live_metrics_dir(name) / "grafana" / "dashboards"),
        )

    def dry_run(self, spec: ClusterSpec) -> list[str]:
        """There is no server to ask locally: the spec's own checks are all there is."""
        raise SpecError(
            "a server-side dry run needs Kubernetes: the local backend has no API server",
            f"use --kube to check against a cluster, or `raykube spec FILE` to validate "
            f"{spec.name!r} here",
        )

    def up(self, spec: ClusterSpec, *, timeout: float = 180.0) -> Endpoints:
        """Start ``spec`` on this machine and wait until every group has its replicas.

        Raises:
            ClusterExists: a cluster of that name is running.
            PortInUse: a port pinned in headGroupSpec.rayStartParams is taken.
            ReadyTimeout: it did not become ready; everything started is stopped again.
        """
        progress = Progress()
        existing = LocalRecord.load(spec.name)
        if existing is not None:
            if find_processes(existing.marker):
                if not find_head_processes(existing.marker):
                    return self._restart_head(existing, spec, timeout=timeout, progress=progress)
                raise ClusterExists(
                    f"a local cluster named {spec.name!r} is already running "
                    f"(dashboard {self._endpoints(existing).dashboard_url})",
                    f"use it, or stop it first with `raykube down {spec.name}`",
                )
            existing.remove()  # left over from a crash: nothing of it runs any more
        for group in spec.worker_group_specs:
            ignored = unsupported_worker_params(group)
            if ignored:
                progress.say(
                    f"group {group.group_name!r}: rayStartParams {', '.join(ignored)} apply on "
                    "Kubernetes only; the local backend ignores them"
                )
        if spec.gcs_fault_tolerance_options is not None:
            self._check_fault_tolerance(spec)
        _, dropped = head_environment(os.environ, spec.head_group_spec)  # forwarded ones set?
        if dropped:
            progress.say(f"cluster {spec.name!r}: not passing your credentials to it: "
                         f"{', '.join(dropped)} (forward one with headGroupSpec.env NAME: "
                         "{secretKeyRef: ...})")
        if any(g.env_from for g in [spec.head_group_spec, *spec.worker_group_specs]):
            progress.say("envFrom applies on Kubernetes only; locally name each variable in "
                         "headGroupSpec.env")
        spec = self._with_private_storage(spec)
        ports = self._allocate_ports(spec)
        record = LocalRecord(
            name=spec.name,
            marker=f"{spec.name}-{uuid.uuid4().hex[:12]}",
            node_ip=_node_ip(),
            ports=ports,
            temp_dir=str(ray_temp_dir(spec.name)),
            token_path=str(ensure_token()),
            spec_yaml=spec.public().to_yaml(),
            targets={g.group_name: int(g.replicas or 0) for g in spec.worker_group_specs},
            head_node_id=new_head_node_id(),
        )
        record.save()
        try:
            make_private_dir(Path(record.temp_dir))  # Ray's sockets, session files and logs
            self._write_autoscaler_config(record, spec)
            progress.say(
                f"cluster {spec.name!r}: starting the head (GCS :{ports.gcs}, dashboard "
                f":{ports.dashboard}, Ray Client :{ports.client})"
            )
            self._start_head(record, spec, timeout=timeout, progress=progress)
            self._wait_for_targets(record, timeout=timeout, progress=progress)
            if spec.enable_in_tree_autoscaling:
                record.targets = {name: None for name in record.targets}
                record.save()
                self._write_autoscaler_config(record, spec)
        except BaseException:
            progress.say(f"cluster {spec.name!r}: start failed; stopping what was started")
            stop_processes(record.marker)
            record.remove()
            raise
        endpoints = self._endpoints(record)
        progress.say(f"cluster {spec.name!r} is ready: dashboard {endpoints.dashboard_url}")
        return endpoints

    @staticmethod
    def _check_fault_tolerance(spec: ClusterSpec) -> None:
        """Refuse what the local backend cannot do with ``gcsFaultToleranceOptions``, and a
        Redis that does not answer, before anything starts.

        Raises:
            SpecError: a Redis password (Ray would carry it on its command lines, which every
                user of this machine can read).
            BackendError: nothing answers as Redis at ``redisAddress``.
        """
        options = spec.gcs_fault_tolerance_options
        assert options is not None
        if options.redis_password is not None:
            raise SpecError(
                "gcsFaultToleranceOptions.redisPassword: a local head would pass the password "
                "on Ray's command lines, where every user of this machine can read it",
                "locally, use a Redis that listens on 127.0.0.1 only and leave redisPassword "
                "out; keep it for Kubernetes, where it comes from the Secret",
            )
        check_redis(options.redis_address)

    def _restart_head(self, record: LocalRecord, spec: ClusterSpec, *, timeout: float,
                      progress: Progress) -> Endpoints:
        """Start the head of ``record`` again while its worker nodes run: same ports, same
        session, its state read back from Redis; the workers rejoin as they are, as after
        KubeRay recreates a head pod.

        Raises:
            ClusterExists: the cluster keeps no state outside its head (no GCS fault
                tolerance), or ``spec`` is not the spec it runs.
        """
        running = parse_spec(yaml.safe_load(record.spec_yaml), source=record.name)
        if running.gcs_fault_tolerance_options is None:
            raise ClusterExists(
                f"local cluster {record.name!r} has lost its head, and without "
                "gcsFaultToleranceOptions its state went with it; its workers exit once the "
                "head is gone for 60 s",
                f"start it anew: `raykube down {record.name}`, then `raykube up SPEC`",
            )
        if self._with_private_storage(spec).public().to_yaml() != record.spec_yaml:
            raise ClusterExists(
                f"local cluster {record.name!r} has lost its head: `up` starts the head again "
                "only from the spec the cluster runs, and this spec differs",
                f"pass the same spec again, or `raykube down {record.name}` first",
            )
        check_redis(running.gcs_fault_tolerance_options.redis_address)
        progress.say(
            f"cluster {record.name!r}: the head is down and its state is in Redis "
            f"({running.gcs_fault_tolerance_options.redis_address}); starting the head again"
        )
        # `ray start --head` refuses a port that the last cluster started here names while any
        # process (a worker raylet) still connects to it: the head is ours and gone.
        (Path(record.temp_dir) / "ray_current_cluster").unlink(missing_ok=True)
        record.head_node_id = new_head_node_id()
        record.save()
        self._write_autoscaler_config(record, running)
        try:
            self._start_head(record, running, timeout=timeout, progress=progress)
            self._wait_for_targets(record, timeout=timeout, progress=progress)
        except BaseException:
            progress.say(f"cluster {record.name!r}: the head did not start again; stopping it "
                         "(the workers keep running; `raykube up` tries again)")
            stop_processes(record.marker, node=None)
            raise
        endpoints = self._endpoints(record)
        progress.say(f"cluster {record.name!r} is ready again: dashboard "
                     f"{endpoints.dashboard_url}")
        return endpoints

    @staticmethod
    def _with_private_storage(spec: ClusterSpec) -> ClusterSpec:
        """``spec`` with its checkpoint folder made and checked: the spec's storage path, else
        this user's private ``$RAYKUBE_HOME/storage/<name>`` (every local cluster has one).

        Raises:
            SpecError: the folder cannot be made, or another user could write into it.
        """
        if spec.storage is None or spec.storage.path is None:
            storage = (spec.storage or StorageSpec()).model_copy(
                update={"path": str(storage_dir(spec.name))})
            return spec.model_copy(update={"storage": storage})
        folder = Path(spec.storage.path)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(f"storage.path {folder} cannot be created: {exc.strerror or exc}",
                            "use a folder you can write, or leave storage.path out") from None
        reason = why_not_private(folder)
        if reason:
            raise SpecError(
                f"storage.path: {reason}; whoever can write there controls what your runs "
                "resume from and your replicas load",
                "use a folder only you can write, or leave storage.path out for "
                f"$RAYKUBE_HOME/storage/{spec.name}",
            )
        return spec

    def status(self, name: str) -> ClusterStatus:
        """The groups, nodes and health of running cluster ``name``."""
        return self._status_of(self._record(name))

    def wait(self, name: str, *, timeout: float = 120.0) -> ClusterStatus:
        """Wait until every pinned group target is met."""
        return self._wait_for_targets(self._record(name), timeout=timeout, progress=Progress())

    def scale(self, name: str, group: str, replicas: int, *, timeout: float = 120.0) -> ClusterStatus:
        """Set ``group`` to ``replicas`` workers and wait until exactly that many run.

        With autoscaling on, the autoscaler owns the count again afterwards: it may add
        workers under load (up to maxReplicas) and remove idle ones (down to minReplicas).

        Raises:
            ScaleError: unknown group, or ``replicas`` outside [minReplicas, maxReplicas].
        """
        record = self._record(name)
        spec = parse_spec(yaml.safe_load(record.spec_yaml), source=name)
        try:
            group_spec = spec.worker_group(group)
        except KeyError as exc:
            raise ScaleError(f"cluster {name!r}: {exc.args[0]}", "pass one of those groups") from None
        check_scale(name, group, replicas, group_spec.replica_bounds)
        progress = Progress()
        progress.say(f"cluster {name!r}: scaling group {group!r} to {replicas}")
        record.targets[group] = replicas
        record.save()
        self._write_autoscaler_config(record, spec)
        status = self._wait_for_targets(record, timeout=timeout, progress=progress)
        if spec.enable_in_tree_autoscaling:
            record.targets[group] = None
            record.save()
            self._write_autoscaler_config(record, spec)
        return status

    def down(self, name: str, *, timeout: float = 60.0, purge: bool = False) -> None:
        """Stop every process of ``name`` and remove its state, keeping its logs unless
        ``purge``. Also cleans a crashed one, and the state of an unreadable record (whose
        marker cannot be trusted to find processes); ``purge`` of a cluster that is already
        down removes the logs it left."""
        try:
            record = LocalRecord.load(name)
        except BackendError:
            remove_state(name, purge=purge)
            Progress().say(f"cluster {name!r}: its unreadable state was removed; no process was "
                           "stopped (its record could not say which)")
            return
        if record is None:
            if purge and kept_logs_dir(name).is_dir():
                remove_state(name, purge=True)
                Progress().say(f"cluster {name!r}: its kept logs were removed")
                return
            raise ClusterNotFound(
                f"no local cluster named {name!r}",
                "`raykube list` shows the clusters raykube knows",
            )
        progress = Progress()
        count = stop_processes(record.marker, timeout=timeout)
        spec = parse_spec(yaml.safe_load(record.spec_yaml), source=name)
        if spec.gcs_fault_tolerance_options is not None:
            forget_cluster_state(spec.gcs_fault_tolerance_options.redis_address,
                                 self._redis_namespace(record, spec), progress=progress)
        remove_state(name, purge=purge)
        kept = "" if purge else f"; logs kept in {kept_logs_dir(name)}"
        progress.say(f"cluster {name!r} is down ({count} processes stopped){kept}")

    def logs(self, name: str, out_dir: Path, *, node: str = "all") -> dict[str, Path]:
        """Copy ``name``'s logs into ``out_dir/<node>``: the running session's, else the last
        session's kept by ``down`` (see :meth:`Backend.logs`)."""
        record = LocalRecord.load(name)
        if record is not None and find_processes(record.marker):
            sources = live_log_dirs(name)
        else:
            sessions = sorted(kept_logs_dir(name).glob("session_*"))
            if not sessions:
                raise ClusterNotFound(
                    f"local cluster {name!r} neither runs nor left logs",
                    "`raykube list` shows the clusters raykube knows",
                )
            sources = {d.name: d for d in sorted(sessions[-1].iterdir()) if d.is_dir()}
        chosen = {n: d for n, d in sources.items() if node_matches(n, node)}
        copied = {}
        for node_name, source in chosen.items():
            target = Path(out_dir) / node_name
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock"))
            copied[node_name] = target
        return copied

    def endpoints(self, name: str) -> Endpoints:
        """How to reach running cluster ``name``."""
        return self._endpoints(self._record(name))

    def list(self, *, all_namespaces: bool = False) -> list[ClusterSummary]:
        """Every local cluster with a record: running, or stale after a crash."""
        if all_namespaces:
            raise SpecError("local clusters have no namespaces: --all-namespaces is for "
                            "Kubernetes", "drop -A, or add --kube to list RayClusters")
        summaries = []
        for name in known_names():
            try:
                record = LocalRecord.load(name)
            except BackendError:
                summaries.append(ClusterSummary(name=name, backend=self.name,
                                                state="unreadable", dashboard_url=None))
                continue
            if record is None:
                continue
            running = bool(find_processes(record.marker))
            summaries.append(
                ClusterSummary(
                    name=name, backend=self.name, state="running" if running else "dead",
                    dashboard_url=self._endpoints(record).dashboard_url if running else None,
                )
            )
        return summaries

    def spec_of(self, name: str) -> ClusterSpec:
        """The spec a running cluster was started from."""
        data: Any = yaml.safe_load(self._record(name).spec_yaml)
        return parse_spec(data, source=name)
