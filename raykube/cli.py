"""The ``raykube`` command: a thin layer over the Python API.

Each command parses its arguments, calls one API function and prints the result. Only
:func:`main` catches :class:`RaykubeError`: it prints ``error:`` and ``hint:`` to stderr and exits
with the error's code, without a traceback unless ``RAYKUBE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from raykube import cluster as clusters
from raykube import frameworks
from raykube.auth import client_env
from raykube.backends import BACKENDS, get_backend
from raykube.backends.base import LOG_NODES, ClusterStatus
from raykube.backends.kuberay.backend import KubeRayBackend
from raykube.batch import batch_predict
from raykube.errors import RaykubeError, SpecError
from raykube.monitoring import prometheus_yaml, write_monitoring
from raykube.output import FORMATS, dump, table
from raykube.progress import LOGGER_NAME
from raykube.render.cluster import TOKEN_KEY, render_all, to_yaml
from raykube.render.rayjob import render_rayjob
from raykube.render.rayservice import render_service_manifests
from raykube.render.serve_config import render_serve_config
from raykube.serving.rayservice import apply_rayservice, dry_run_rayservice
from raykube.serving.judge import Figures
from raykube.serving.rollout import PROMOTED, RolloutResult
from raykube.serving.service import ServiceStatus, deploy, get_service, list_services, step_in
from raykube.specs.base import KIND_NAMES, explain, read_yaml, spec_kind
from raykube.specs.batch import load_batch_spec, parse_batch_spec
from raykube.specs.cluster import GROUP_RESOURCE_PREFIX, ClusterSpec, load_spec
from raykube.specs.examples import EXAMPLES, write_example
from raykube.specs.job import load_job_spec
from raykube.specs.serve import ServeSpec, load_serve_spec
from raykube.submission import jobs
from raykube.submission.rayjob import apply_rayjob, dry_run_rayjob
from raykube.target import Target, resolve
from raykube.training.api import train

Handler = Callable[[argparse.Namespace], int]


def _amount(resource: str, value: float) -> str:
    """A resource amount as a person reads it: bytes in GiB/MiB, counts as numbers."""
    if resource in ("memory", "object_store_memory"):
        return f"{value / 2**30:.1f}GiB" if value >= 2**30 else f"{value / 2**20:.0f}MiB"
    return f"{value:g}"


def _print_status(status: ClusterStatus) -> None:
    health = "ready" if status.is_ready else "not ready"
    print(f"cluster {status.name} ({status.backend}): {health}")
    if status.endpoints:
        print(f"  dashboard: {status.endpoints.dashboard_url}")
        print(f"  address:   {status.endpoints.gcs_address}")
    if status.message:
        print(f"  message:   {status.message}")
    print(f"  head: {'up' if status.head_ready else 'down'}")
    print(f"  {'GROUP':<16}{'READY':>6}{'REPLICAS':>10}{'MIN':>6}{'MAX':>6}")
    for group in status.groups:
        print(
            f"  {group.name:<16}{group.ready:>6}{group.replicas:>10}"
            f"{group.min_replicas:>6}{group.max_replicas:>6}"
        )
    print(f"  nodes ({sum(n.alive for n in status.nodes)} alive):")
    for node in status.nodes:
        if node.alive:
            resources = ", ".join(
                f"{k}={_amount(k, v)}" for k, v in sorted(node.resources.items())
                if not k.startswith((GROUP_RESOURCE_PREFIX, "node:"))
            )
            print(f"    {node.node_id[-10:]}  {node.group:<16} {resources}")


def _print_checked(checked: list[str]) -> int:
    """What a server-side dry run checked: one line each, nothing made."""
    for what in checked:
        print(f"{what}: valid (server dry run; nothing was created)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    spec = _cluster_spec(args)
    if args.dry_run:
        return _print_checked(clusters.dry_run(spec, backend=args.backend,
                                               namespace=args.namespace))
    cluster = clusters.up(spec, backend=args.backend, timeout=args.timeout,
                          namespace=args.namespace)
    if not cluster.capabilities.direct_ports:
        endpoints = cluster.status().endpoints
        assert endpoints is not None
        print(f"cluster {cluster.name} is up (Ray: head and every worker joined)")
        print(f"  dashboard (in the cluster): {endpoints.dashboard_url}")
        print(f"next: raykube job submit --kube --cluster {cluster.name} -- python ...  |  "
              f"raykube port-forward --kube {cluster.name} (for ray job submit, notebooks)")
        return 0
    endpoints = cluster.endpoints
    print(f"cluster {cluster.name} is up")
    print(f"  dashboard: {endpoints.dashboard_url}")
    print(f"  address:   {endpoints.gcs_address}")
    print(f"next: raykube status {cluster.name}  |  eval \"$(raykube env {cluster.name})\"")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else [
        s.name for s in clusters.list_clusters(backend=args.backend, namespace=args.namespace)
        if s.state not in ("dead", "unreadable")
    ]
    statuses = [clusters.get(name, backend=args.backend, namespace=args.namespace).status()
                for name in names]
    if args.output != "table":
        print(dump(statuses[0] if args.name else statuses, args.output), end="")
        return 0
    if not statuses:
        print("no running clusters; start one with `raykube up clusters/local.yaml`")
    for status in statuses:
        _print_status(status)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    cluster = clusters.get(args.name, backend=args.backend, namespace=args.namespace)
    status = cluster.scale(args.group, args.replicas, timeout=args.timeout)
    print(f"group {args.group} of cluster {args.name}: {status.group(args.group).ready} workers")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    get_backend(args.backend, namespace=args.namespace).down(
        args.name, timeout=args.timeout, purge=args.purge)
    print(f"cluster {args.name} is down")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir or f"raykube-logs-{args.name}")
    copied = clusters.logs(args.name, out_dir, node=args.node, backend=args.backend,
                           namespace=args.namespace)
    if not copied:
        print(f"cluster {args.name}: no {args.node} logs", file=sys.stderr)
        return 1
    for node, where in copied.items():
        print(f"{node}: {where}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    summaries = clusters.list_clusters(backend=args.backend, namespace=args.namespace,
                                       all_namespaces=args.all_namespaces)
    if args.output != "table":
        print(dump(summaries, args.output), end="")
        return 0
    if not summaries:
        print("no clusters; start one with `raykube up clusters/local.yaml`")
        return 0
    if args.all_namespaces:
        print(table(["NAMESPACE", "NAME", "BACKEND", "STATE", "DASHBOARD"],
                    [[s.namespace, s.name, s.backend, s.state, s.dashboard_url or "-"]
                     for s in summaries]), end="")
    else:
        print(table(["NAME", "BACKEND", "STATE", "DASHBOARD"],
                    [[s.name, s.backend, s.state, s.dashboard_url or "-"] for s in summaries]),
              end="")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    if args.explain or not args.spec:
        print(explain(ClusterSpec))
        return 0
    kind = spec_kind(args.spec)
    if kind != "RayCluster":  # the other kinds are validated by their own loader
        loaders = {"RayJob": load_job_spec, "Serve": load_serve_spec,
                   "BatchPredict": load_batch_spec}
        loaded = loaders[kind](args.spec)
        name = (loaded[0] if isinstance(loaded, tuple) else loaded).name
        print(f"{args.spec}: valid {KIND_NAMES[kind]} {name!r}")
        return 0
    spec = load_spec(args.spec)
    groups = ", ".join(
        f"{g.group_name} ({g.min_replicas}..{g.max_replicas}, {g.gpu} GPU)"
        for g in spec.worker_group_specs
    )
    print(f"{args.spec}: valid cluster spec {spec.name!r}; worker groups: {groups or 'none'}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    path = write_example(args.kind, args.out or f"{args.kind}.yaml", force=args.force)
    print(f"wrote {path}; next: raykube up {path}")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["raykube"], shell=args.shell), end="")
    return 0


def cluster_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Shell completion of a cluster name: the clusters the command's backend lists
    (``--kube``: the namespace's RayClusters; an unreachable API completes nothing)."""
    try:
        summaries = clusters.list_clusters(backend=getattr(parsed_args, "backend", "local"),
                                           namespace=getattr(parsed_args, "namespace", None))
    except RaykubeError:
        return []
    return [s.name for s in summaries if s.name.startswith(prefix)]


def cmd_metrics(args: argparse.Namespace) -> int:
    cluster = clusters.get(args.name, backend=args.backend, namespace=args.namespace)
    if not args.out:
        print(prometheus_yaml(cluster, scrape_interval=args.scrape_interval), end="")
        return 0
    files = write_monitoring(cluster, args.out, scrape_interval=args.scrape_interval,
                             alert_for=args.alert_for)
    print(f"wrote {files.config} (scrapes {cluster.name}), {files.rules}, "
          f"{len(files.dashboards)} raykube and {len(files.ray_dashboards)} Ray Grafana "
          f"dashboards in {files.config.parent / 'dashboards'}")
    print(f"next: prometheus --config.file={files.config}", file=sys.stderr)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    backend = get_backend(args.backend, namespace=args.namespace)
    if not backend.capabilities.direct_ports:
        raise RaykubeError(
            "a KubeRay cluster's addresses are in-cluster names; from this machine they are "
            "reached through a port-forward, which lives as long as its process",
            f"run `raykube port-forward --kube {args.name} --dashboard-port 8265` (it prints "
            "RAY_API_SERVER_ADDRESS) and keep it running while you use `ray job submit`",
        )
    endpoints = clusters.Cluster(args.name, backend).endpoints
    variables = {"RAY_API_SERVER_ADDRESS": endpoints.dashboard_url}
    variables.update(client_env(endpoints.auth_token_path))
    print(exports(variables), end="")
    return 0


def exports(variables: dict[str, str]) -> str:
    """``export NAME=VALUE`` lines a shell's ``eval`` takes back exactly (values quoted)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in variables.items())


def entrypoint_of(argv: list[str]) -> str:
    """The job's shell command from the words after ``--``: one word is a command line the user
    quoted whole (``"python a.py && python b.py"``); several are argv, kept word for word (an
    argument with a space or a quote stays one argument)."""
    words = argv[1:] if argv[:1] == ["--"] else argv
    return (words[0] if len(words) == 1 else shlex.join(words)).strip()


def cmd_job_submit(args: argparse.Namespace) -> int:
    entrypoint = entrypoint_of(args.entrypoint)
    if not entrypoint:
        print("error: no entrypoint: put the command after --, e.g. "
              "raykube job submit -- python train.py", file=sys.stderr)
        return 2
    if args.runtime_env and args.runtime_env_json:
        raise SpecError("--runtime-env and --runtime-env-json both given",
                        "give the runtime env once: a YAML file or inline JSON")
    runtime_env = (_yaml_file_object(args.runtime_env, "--runtime-env") if args.runtime_env
                   else _json_object(args.runtime_env_json, "--runtime-env-json"))
    resources = _json_object(args.entrypoint_resources, "--entrypoint-resources")
    metadata = _json_object(args.metadata_json, "--metadata-json")
    if resources and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                             for v in resources.values()):
        raise SpecError("--entrypoint-resources values must be numbers >= 0",
                        "e.g. --entrypoint-resources '{\"group:cpu\": 1}'")
    if metadata and not all(isinstance(v, str) for v in metadata.values()):
        raise SpecError("--metadata-json values must be strings, as Ray keeps them",
                        "e.g. --metadata-json '{\"commit\": \"abc123\"}'")
    job = jobs.submit(
        _target(args), entrypoint, working_dir=args.working_dir, runtime_env=runtime_env,
        num_cpus=args.entrypoint_num_cpus, num_gpus=args.entrypoint_num_gpus,
        resources=resources, memory=args.entrypoint_memory, metadata=metadata,
        submission_id=args.submission_id,
    )
    print(f"job {job.job_id} submitted", file=sys.stderr, flush=True)
    if args.no_wait:
        print(job.job_id)
        return 0
    try:
        for chunk in job.stream_logs():
            print(chunk, end="", flush=True)
        info = job.wait(timeout=args.timeout)
    except KeyboardInterrupt:
        # Asked to run and wait, and stopped waiting: the job goes too, as a CI step's work
        # should when the step is cancelled (--no-wait leaves jobs running).
        print(f"stopping job {job.job_id}", file=sys.stderr, flush=True)
        job.stop()
        job.wait(timeout=60, check=False)
        raise
    print(f"job {job.job_id} {info.state.value}", file=sys.stderr)
    return 0


def cmd_job_apply(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _print_checked(dry_run_rayjob(args.spec, namespace=args.namespace))
    status = apply_rayjob(args.spec, namespace=args.namespace, wait=not args.no_wait,
                          timeout=args.timeout)
    print(f"RayJob {status.namespace}/{status.name} created", file=sys.stderr, flush=True)
    if args.no_wait:
        print(status.name)
        return 0
    state = status.job_status.value if status.job_status else ""
    print(f"RayJob {status.namespace}/{status.name}: {state} (Ray job {status.job_id} on "
          f"RayCluster {status.cluster})")
    return 0


def cmd_job_status(args: argparse.Namespace) -> int:
    info = jobs.get_job(_target(args), args.job_id).info()
    if args.output != "table":
        print(dump(info, args.output), end="")
        return 0
    print(f"{info.job_id}: {info.state.value}" + (f" ({info.message})" if info.message else ""))
    return 0


def cmd_job_logs(args: argparse.Namespace) -> int:
    job = jobs.get_job(_target(args), args.job_id)
    if args.follow:
        for chunk in job.stream_logs():
            print(chunk, end="", flush=True)
    else:
        print(job.logs(), end="")
    return 0


def cmd_job_stop(args: argparse.Namespace) -> int:
    job = jobs.get_job(_target(args), args.job_id)
    job.stop()
    info = job.wait(timeout=args.timeout, check=False)
    print(f"job {job.job_id} {info.state.value}")
    return 0


def cmd_job_list(args: argparse.Namespace) -> int:
    infos = jobs.list_jobs(_target(args))
    if args.output != "table":
        print(dump(infos, args.output), end="")
    elif not infos:
        print("no jobs")
    else:
        print(table(["JOB", "STATE", "ENTRYPOINT"],
                    [[i.job_id, i.state.value, i.entrypoint] for i in infos]), end="")
    return 0


def _load_function(target: str) -> Callable[..., object]:
    """``path/to/file.py:function`` -> the function (its folder goes on sys.path first)."""
    path_text, _, function = target.rpartition(":")
    path = Path(path_text)
    if not path_text or not function or not path.is_file():
        raise RaykubeError(f"{target!r} is not FILE.py:FUNCTION of an existing file",
                           "e.g. raykube train jobs/train_torch.py:train_loop")
    sys.path.insert(0, str(path.parent.resolve()))
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[path.stem] = module
    module_spec.loader.exec_module(module)
    loop = getattr(module, function, None)
    if not callable(loop):
        raise RaykubeError(f"{path} has no function {function!r}",
                           "name the per-worker training function after the colon")
    return loop  # type: ignore[no-any-return]


def cmd_train(args: argparse.Namespace) -> int:
    frameworks.get(args.framework)  # bad flags are refused before a cluster is looked up
    datasets = _datasets(args.dataset)
    workers: int | tuple[int, int] = args.workers
    if args.max_workers:
        workers = (args.workers, args.max_workers)
    result = train(
        _load_function(args.target), framework=args.framework, cluster=_target(args),
        num_workers=workers, cpus_per_worker=args.cpus, gpus_per_worker=args.gpus,
        worker_group=args.worker_group, storage_path=args.storage, name=args.name,
        config=_json_object(args.config, "--config"),
        max_failures=args.max_failures, datasets=datasets,
    )
    print(json.dumps({"metrics": result.metrics, "checkpoint": result.checkpoint,
                      "path": result.path}, default=str, sort_keys=True))
    return 0


def cmd_batch_run(args: argparse.Namespace) -> int:
    if (args.spec is None) == (args.spec_json is None):
        raise SpecError("give a batch spec file, or --spec-json (not both)",
                        "e.g. raykube batch run jobs/digits.batch.yaml --cluster local")
    spec = (load_batch_spec(args.spec) if args.spec is not None else
            parse_batch_spec(_json_object(args.spec_json, "--spec-json"), source="--spec-json"))
    result = batch_predict(spec, _target(args), timeout=args.timeout)
    print(result.to_json())
    return 0


def _datasets(values: list[str] | None) -> dict[str, str] | None:
    """``--dataset NAME=PATH`` flags as a mapping, or a SpecError naming the bad one."""
    datasets: dict[str, str] = {}
    for value in values or []:
        name, sep, location = value.partition("=")
        if not sep or not name or not location:
            raise SpecError(f"--dataset {value!r} is not NAME=PATH",
                            "e.g. --dataset train=/data/digits/train")
        datasets[name] = location
    return datasets or None


def cmd_manifest(args: argparse.Namespace) -> int:
    kind = spec_kind(args.spec)
    if kind in ("RayJob", "BatchPredict"):
        job, cluster = load_job_spec(args.spec)
        objects = [render_rayjob(job, cluster)]
    elif kind == "Serve":
        objects = render_service_manifests(load_serve_spec(args.spec))
    else:
        spec = _cluster_spec(args)
        objects = render_all(spec)
        if spec.token_secret:
            print(f"note: the pods read their Ray token from Secret {spec.token_secret} (key "
                  f"{TOKEN_KEY}); `raykube up --kube` creates it, or: kubectl create secret "
                  f"generic {spec.token_secret} --from-literal={TOKEN_KEY}=\"$(openssl rand "
                  "-hex 32)\"", file=sys.stderr)
    print(to_yaml(objects), end="")
    return 0


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    """The JSON object a flag holds (None when not given), or a SpecError naming the flag."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"{flag} is not JSON: {exc}", f"e.g. {flag} '{{\"pip\": [\"requests\"]}}'"
                        ) from None
    if not isinstance(value, dict):
        raise SpecError(f"{flag} must be a JSON object, not {type(value).__name__}",
                        f"e.g. {flag} '{{\"env_vars\": {{\"A\": \"1\"}}}}'")
    return value


def _yaml_file_object(path: str, flag: str) -> dict[str, Any]:
    """The mapping a YAML (or JSON) file holds, read with raykube's safe loader (size, depth
    and alias limits), or a SpecError naming the flag."""
    value = read_yaml(path)
    if not isinstance(value, dict):
        raise SpecError(f"{flag} {path}: the file must hold a mapping (a Ray runtime env)",
                        "e.g. working_dir: ., pip: [requests], env_vars: {A: '1'}")
    return value


def _percent(text: str, version: str) -> int:
    """A ``--weight`` share, or a SpecError naming it."""
    if not text.isdigit() or int(text) > 100:
        raise SpecError(f"--weight {version}={text[:20]!r}: a weight is a whole percent 0..100",
                        f"e.g. --weight {version}=10")
    return int(text)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``["v1=a", "v2=b"]`` -> ``{"v1": "a", "v2": "b"}``; a malformed item is a SpecError."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SpecError(f"--{what} {item!r} is not VERSION=VALUE", f"e.g. --{what} v2=10")
        pairs[key] = value
    return pairs


def _target(args: argparse.Namespace) -> Target:
    """The cluster a workload command (job, serve, train) means: ``--cluster`` on the backend
    the options name (see :func:`raykube.target.resolve`)."""
    return resolve(args.cluster, backend=args.backend, namespace=args.namespace)


ROLLED_BACK_EXIT = 10
"""Exit status of `serve deploy` when its judged rollout rolled back (or was stopped)."""


def _print_service(status: ServiceStatus) -> None:
    print(f"service {status.name}: {status.status}  {status.url}")
    for version in status.versions:
        print(f"  {version.version:<10} weight {version.weight:>3}%  {version.status:<12} "
              f"{version.running} replica{'s' if version.running != 1 else ''} running")
    if status.last_rollout:
        print(f"  last {status.last_rollout.summary()}")
    if status.message and not status.is_running:
        print(status.message)


def _print_rollout(result: RolloutResult) -> None:
    print(result.summary())
    for step in result.steps:
        shown = (Figures(**step.canary).shown() if step.canary else "-")
        stable = f"; {result.stable}: {Figures(**step.stable).shown()}" if step.stable else ""
        print(f"  {step.percent:>3}%  {'passed' if step.passed else 'FAILED'}  {step.seconds:.0f} s"
              f"  {result.canary}: {shown}{stable}"
              + ("" if step.passed else f"  ({'; '.join(step.reasons)})"))


def cmd_serve_deploy(args: argparse.Namespace) -> int:
    spec = load_serve_spec(args.spec)
    checkpoints = _pairs(args.checkpoint, "checkpoint")
    if checkpoints:
        versions = [v.model_copy(update={"checkpoint": checkpoints.get(v.version, v.checkpoint)})
                    for v in spec.versions]
        spec = spec.model_copy(update={"versions": versions}).validated()
    weights = _pairs(args.weight, "weight")
    if weights:
        spec = spec.with_weights(**{v: _percent(w, v) for v, w in weights.items()})
    if not args.cluster and get_backend(args.backend).capabilities.service_clusters:
        if args.dry_run:
            return _print_checked(dry_run_rayservice(spec, namespace=args.namespace))
        return _apply_rayservice(spec, args)
    if args.dry_run:
        raise SpecError("--dry-run=server checks a RayService on Kubernetes; a deploy onto a "
                        "running cluster (--cluster) has no server-side dry run",
                        "use `serve deploy --kube SPEC --dry-run=server` without --cluster, or "
                        "`raykube serve build SPEC` to see the Serve config")
    service = deploy(spec, _target(args), timeout=args.timeout)
    status = service.status()
    _print_service(status)
    if service.last_rollout:
        _print_rollout(service.last_rollout)
        if service.last_rollout.verdict != PROMOTED:
            return ROLLED_BACK_EXIT
    print(f"next: curl -s -X POST {status.url} -H 'Content-Type: application/json' "
          "-d '{\"instances\": [[...]]}'", file=sys.stderr)
    return 0


def cmd_serve_rollout(args: argparse.Namespace) -> int:
    if args.action == "status":
        result = get_service(args.name, _target(args)).status().last_rollout
        if args.output != "table":
            print(dump(result, args.output), end="")
        elif result is None:
            print(f"service {args.name}: no judged rollout yet (a serve spec's rollout: policy "
                  "makes one when a deploy adds a version)")
        else:
            _print_rollout(result)
        return 0
    result = step_in(args.name, _target(args), action=args.action)
    print(result.summary())
    return 0


def _apply_rayservice(spec: ServeSpec, args: argparse.Namespace) -> int:
    """``serve deploy --kube`` without ``--cluster``: the service as a KubeRay RayService on a
    cluster of its own (``cluster:`` in the spec); a second deploy is the rollout."""
    started = time.time()
    status = apply_rayservice(spec, namespace=args.namespace, timeout=args.timeout)
    print(f"RayService {status.namespace}/{spec.name}: serving on RayCluster {status.cluster} "
          f"({status.serve_endpoints} serve endpoints); applications: "
          + ", ".join(f"{a} {s}" for a, s in sorted(status.applications.items())))
    print(f"  in the cluster: http://{spec.name}-serve-svc.{status.namespace}.svc.cluster.local"
          f":8000{spec.route}")
    print(f"next: raykube port-forward --kube -n {status.namespace} {status.cluster} "
          f"--serve-port 8000, then POST to http://127.0.0.1:8000{spec.route}", file=sys.stderr)
    rollout = status.last_rollout
    if rollout and rollout.started >= started:  # this deploy ran it
        _print_rollout(rollout)
        if rollout.verdict != PROMOTED:
            return ROLLED_BACK_EXIT
    return 0


def cmd_serve_build(args: argparse.Namespace) -> int:
    spec = load_serve_spec(args.spec)
    if spec.uses_local_working_dir():
        print(f"note: workingDir {spec.working_dir} is a local folder and is left out: "
              "`raykube serve deploy` uploads it; elsewhere give a URI", file=sys.stderr)
    config = render_serve_config(spec, http_port=args.port)
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def cmd_serve_status(args: argparse.Namespace) -> int:
    cluster = _target(args)
    statuses = [get_service(args.name, cluster).status()] if args.name else list_services(cluster)
    if args.output != "table":
        print(dump(statuses[0] if args.name else statuses, args.output), end="")
        return 0
    if not statuses:
        print("no services")
    for status in statuses:
        _print_service(status)
    return 0


def cmd_serve_delete(args: argparse.Namespace) -> int:
    get_service(args.name, _target(args)).delete(timeout=args.timeout)
    print(f"service {args.name} deleted")
    return 0


def cmd_port_forward(args: argparse.Namespace) -> int:
    fixed = {role: port for role, port in (("dashboard", args.dashboard_port),
                                           ("client", args.client_port),
                                           ("serve", args.serve_port)) if port}
    forward, endpoints = KubeRayBackend(namespace=args.namespace).port_forward(args.name, fixed)
    print(exports({"RAY_API_SERVER_ADDRESS": endpoints.dashboard_url,
                   **client_env(endpoints.auth_token_path)}), end="")
    print(f"# Ray Client: {endpoints.client_address}  Serve: {endpoints.serve_url}  "
          f"GCS: {endpoints.gcs_address}", flush=True)
    print("forwarding; Ctrl-C (or SIGTERM) stops it", file=sys.stderr, flush=True)
    stop = threading.Event()
    # Both signals end the forward cleanly: a CI step stops a background process with SIGTERM,
    # and a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait(args.seconds)
    finally:
        forward.close()
    return 0


def cmd_address(args: argparse.Namespace) -> int:
    print(clusters.get(args.name, backend=args.backend, namespace=args.namespace).dashboard_url)
    return 0


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    """--backend, --kube and --namespace: which backend a cluster command talks to."""
    p.add_argument(
        "--backend", choices=BACKENDS, default="local",
        help="where the cluster runs (default: local)",
    )
    p.add_argument("--kube", dest="backend", action="store_const", const="kuberay",
                   help="same as --backend kuberay (Kubernetes, via KUBECONFIG)")
    p.add_argument("--namespace", "-n", default=None,
                   help="Kubernetes namespace (default: the spec's, else the context's)")


def _add_output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=FORMATS, default="table",
                   help="table (default, for people), or json / yaml for scripts")


def _add_dry_run_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", choices=["server"], default=None,
                   help="Kubernetes: have the API server check every object (schemas, "
                   "admission, RBAC) and create nothing, as kubectl's --dry-run=server")


def _add_monitoring_options(p: argparse.ArgumentParser) -> None:
    """The spec's ``monitoring:`` switches, from the command line."""
    p.add_argument("--pod-monitor", action="store_true",
                   help="Kubernetes: PodMonitors for the head and workers (monitoring.podMonitor)")
    p.add_argument("--service-monitor", action="store_true",
                   help="Kubernetes: a ServiceMonitor on the head (monitoring.serviceMonitor)")
    p.add_argument("--alerts", action="store_true",
                   help="Kubernetes: raykube's alert rules as a PrometheusRule")
    p.add_argument("--grafana", action="store_true",
                   help="Kubernetes: raykube's and Ray's Grafana dashboards as ConfigMaps")
    p.add_argument("--release", default=None,
                   help="the Prometheus operator's release label (default: the spec's, "
                   "'prometheus')")


def _add_network_policy_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network-policy", action="store_true",
                   help="Kubernetes: also a NetworkPolicy admitting only the cluster's own pods "
                   "(and Serve and metrics ports); the spec's networkPolicy: true")


def _cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    """The cluster spec file of a command, with its command-line options applied."""
    spec = load_spec(args.spec)
    if args.network_policy:
        spec.network_policy = True
    switches = {"pod_monitor": args.pod_monitor, "service_monitor": args.service_monitor,
                "alerts": args.alerts, "grafana": args.grafana}
    chosen = {key: True for key, on in switches.items() if on}
    if args.release:
        chosen["release"] = args.release
    if chosen:
        spec.monitoring = type(spec.monitoring).model_validate(
            {**spec.monitoring.model_dump(), **chosen})
    return spec


def _workload_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                      handler: Handler, help_text: str, cluster_help: str
                      ) -> argparse.ArgumentParser:
    """A subcommand that runs on a cluster: ``--cluster`` and the backend options."""
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--cluster", default=None, help=cluster_help)
    _add_backend_options(p)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="raykube", description="Run AI workloads on Ray, locally or on Kubernetes (KubeRay)."
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say more: raykube's debug lines and Ray Train's own progress")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_backend_options(p)
        p.set_defaults(handler=handler)
        return p

    p = command("up", cmd_up, "start a cluster from a spec file and wait until it is ready "
                "(locally, also a lost head of one with gcsFaultToleranceOptions)")
    p.add_argument("spec", help="cluster spec file, e.g. clusters/local.yaml")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (default 180)")
    _add_network_policy_option(p)
    _add_monitoring_options(p)
    _add_dry_run_option(p)

    p = command("status", cmd_status, "show groups, nodes, resources and health")
    p.add_argument("name", nargs="?", help="cluster name (default: every running cluster)")
    _add_output_option(p)

    p = command("scale", cmd_scale, "set a worker group's replicas within its bounds")
    p.add_argument("name", help="cluster name")
    p.add_argument("--group", required=True, help="worker group (groupName)")
    p.add_argument("--replicas", type=int, required=True, help="number of workers")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")

    p = command("down", cmd_down, "stop a cluster and everything it started (its logs stay)")
    p.add_argument("name", help="cluster name")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    p.add_argument("--purge", action="store_true", help="also delete the logs it keeps")

    p = command("logs", cmd_logs, "copy a cluster's logs (running, or kept by down) to a folder")
    p.add_argument("name", help="cluster name")
    p.add_argument("--node", choices=LOG_NODES, default="all", help="whose logs (default all)")
    p.add_argument("--out-dir", default=None, help="where to (default ./raykube-logs-NAME)")

    p = command("list", cmd_list, "list the clusters raykube knows (on Kubernetes: every "
                "RayCluster in the namespace)")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="Kubernetes: RayClusters of every namespace")
    _add_output_option(p)

    p = command("spec", cmd_spec, "validate a spec file, or list every spec field")
    p.add_argument("spec", nargs="?", help="cluster spec file to validate")
    p.add_argument("--explain", action="store_true", help="list every field of the spec")

    p = sub.add_parser("init", help="write an example cluster spec to start from",
                       description="Write one of the example cluster specs shipped with "
                       "raykube: local (a head and an autoscaled CPU group) or gpu (adds a GPU "
                       "group).")
    p.add_argument("kind", nargs="?", choices=EXAMPLES, default="local",
                   help="which example (default local)")
    p.add_argument("out", nargs="?", default=None, help="file to write (default KIND.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("completion", help="print the shell completion script (commands, "
                       "flags, cluster names)", description="Print the script that makes "
                       "your shell complete raykube's commands, flags and cluster names, e.g. "
                       "eval \"$(raykube completion bash)\" in ~/.bashrc.")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="your shell")
    p.set_defaults(handler=cmd_completion)

    p = command("metrics", cmd_metrics, "print (or write with --out) the Prometheus scrape "
                "configuration of a local cluster, with raykube's alert rules and dashboards")
    p.add_argument("name", help="cluster name")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write prometheus.yml, raykube-alerts.yml and dashboards/ here")
    p.add_argument("--scrape-interval", default="15s", help="scrape and rule interval")
    p.add_argument("--alert-for", default=None,
                   help="how long an alert's condition must hold (overrides each rule's)")

    p = command("env", cmd_env, "print the exports that let Ray's own CLI reach a cluster")
    p.add_argument("name", help="cluster name")

    p = sub.add_parser("train", help="run a per-worker training function with Ray Train",
                       description="Run FILE.py:FUNCTION on a cluster's workers (raykube.train).")
    _add_backend_options(p)
    p.add_argument("target", help="FILE.py:FUNCTION, the per-worker loop")
    p.add_argument("--framework", default="torch", help="torch, tensorflow or mxnet")
    p.add_argument("--cluster", default=None, help="cluster name or host:port")
    p.add_argument("--workers", type=int, default=2, help="workers (the minimum when elastic)")
    p.add_argument("--max-workers", type=int, default=None, help="elastic: grow up to this")
    p.add_argument("--cpus", type=float, default=1, help="CPUs per worker")
    p.add_argument("--gpus", type=float, default=0, help="GPUs per worker")
    p.add_argument("--worker-group", default=None, help="place workers on this group")
    p.add_argument("--storage", default=None, help="checkpoint folder (default: the spec's)")
    p.add_argument("--name", default=None, help="run name; the same name resumes")
    p.add_argument("--config", default=None, help="JSON passed to the function")
    p.add_argument("--max-failures", type=int, default=None, help="restarts after failures")
    p.add_argument("--dataset", action="append", metavar="NAME=PATH",
                   help="a data set streamed to the workers (worker.dataset(NAME)): a folder, "
                   "file or URI of Parquet/CSV/NumPy files; repeat for more")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("manifest", help="print the KubeRay manifests of a spec (for kubectl "
                       "apply / GitOps)", description="Print the KubeRay manifests of a spec.")
    p.add_argument("spec", help="cluster spec file, a job spec (kind: RayJob), a batch spec "
                   "(kind: BatchPredict, rendered as a RayJob) or a serve spec (kind: Serve, "
                   "rendered as a RayService)")
    _add_monitoring_options(p)
    _add_network_policy_option(p)
    p.set_defaults(handler=cmd_manifest)

    p = command("port-forward", cmd_port_forward,
                "forward a KubeRay head's dashboard, client, Serve and GCS ports to this machine")
    p.add_argument("name", help="cluster name")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    for role, usual in (("dashboard", 8265), ("client", 10001), ("serve", 8000)):
        p.add_argument(f"--{role}-port", type=int, default=None,
                       help=f"local port for the head's {role} port (e.g. {usual}; default: free)")
    p = command("address", cmd_address, "print the dashboard (Jobs API) URL of a cluster")
    p.add_argument("name", help="cluster name")

    job = sub.add_parser("job", help="submit and follow Ray jobs", description="Ray jobs.")
    job_sub = job.add_subparsers(dest="job_command", required=True, metavar="JOB_COMMAND")

    def job_command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        return _workload_command(job_sub, name, handler, help_text, "cluster name, "
                                 "kuberay:NAMESPACE/NAME or dashboard URL (default: the only "
                                 "running cluster)")

    p = job_command("submit", cmd_job_submit,
                    "submit a job, stream its logs, exit non-zero unless it succeeds")
    p.add_argument("--working-dir", default=None, help="local folder uploaded as the job's cwd")
    p.add_argument("--runtime-env", default=None, metavar="FILE",
                   help="Ray runtime env from a YAML file (as ray job submit)")
    p.add_argument("--runtime-env-json", default=None, help="Ray runtime env as JSON")
    p.add_argument("--entrypoint-num-cpus", "--num-cpus", type=float, default=None,
                   help="CPUs reserved for the entrypoint")
    p.add_argument("--entrypoint-num-gpus", "--num-gpus", type=float, default=None,
                   help="GPUs reserved for the entrypoint")
    p.add_argument("--entrypoint-memory", type=int, default=None,
                   help="memory (bytes) reserved for the entrypoint")
    p.add_argument("--entrypoint-resources", default=None,
                   help="other resources reserved for the entrypoint, as JSON")
    p.add_argument("--metadata-json", default=None,
                   help="string labels kept with the job, as JSON")
    p.add_argument("--submission-id", default=None, help="job id to use")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    p = job_sub.add_parser("apply", help="run a RayJob spec on Kubernetes and follow it to "
                           "the end", description="Create a KubeRay RayJob from a job spec "
                           "(kind: RayJob) and wait until it ends; exit non-zero unless it "
                           "SUCCEEDED.")
    p.add_argument("spec", help="job spec file (kind: RayJob), e.g. jobs/train-digits.rayjob.yaml")
    _add_backend_options(p)
    p.add_argument("--no-wait", action="store_true", help="print the RayJob's name and return")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    _add_dry_run_option(p)
    p.set_defaults(handler=cmd_job_apply)
    for name, handler, text in (("status", cmd_job_status, "show a job's state"),
                                ("logs", cmd_job_logs, "print a job's output"),
                                ("stop", cmd_job_stop, "stop a running job")):
        p = job_command(name, handler, text)
        p.add_argument("job_id", help="the job's submission id")
        if name == "status":
            _add_output_option(p)
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="stream until it ends")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    _add_output_option(job_command("list", cmd_job_list, "list the cluster's jobs"))

    batch = sub.add_parser("batch", help="batch inference with Ray Data",
                           description="Batch inference.")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True,
                                     metavar="BATCH_COMMAND")
    p = batch_sub.add_parser("run", help="run a batch spec (kind: BatchPredict) on a cluster and "
                             "print what it wrote as JSON", description="Predict every row of "
                             "the spec's input with an autoscaling pool of predictor actors, "
                             "writing one output row per input row.")
    p.add_argument("spec", nargs="?", default=None, help="batch spec file, e.g. "
                   "jobs/digits.batch.yaml")
    p.add_argument("--spec-json", default=None, help="the spec as JSON instead of a file (what "
                   "a RayJob's entrypoint passes)")
    p.add_argument("--cluster", default=None, help="cluster name or host:port (default: the "
                   "cluster of the Ray job this runs in)")
    _add_backend_options(p)
    p.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    p.set_defaults(handler=cmd_batch_run)

    serve = sub.add_parser("serve", help="deploy models with Ray Serve", description="Serving.")
    serve_sub = serve.add_subparsers(dest="serve_command", required=True, metavar="SERVE_COMMAND")

    def serve_command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        return _workload_command(serve_sub, name, handler, help_text, "cluster name or "
                                 "kuberay:NAMESPACE/NAME (default: the only running local "
                                 "cluster)")

    p = serve_command("deploy", cmd_serve_deploy,
                      "deploy a serve spec, or roll out its new versions and traffic shares")
    p.add_argument("spec", help="serve spec file (kind: Serve), e.g. jobs/digits.serve.yaml")
    p.add_argument("--checkpoint", action="append", metavar="VERSION=PATH",
                   help="use this checkpoint for a version (repeatable)")
    p.add_argument("--weight", action="append", metavar="VERSION=PERCENT",
                   help="traffic share of a version; unnamed versions get 0 (repeatable)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per step (default 300)")
    _add_dry_run_option(p)
    p = serve_sub.add_parser("build", help="print the Serve config of a serve spec (the format "
                             "`serve build` writes; RayService serveConfigV2)")
    p.add_argument("spec", help="serve spec file (kind: Serve)")
    p.add_argument("--port", type=int, default=8000, help="Serve's HTTP port (default 8000)")
    p.set_defaults(handler=cmd_serve_build)
    p = serve_command("status", cmd_serve_status, "show services, versions and replicas")
    p.add_argument("name", nargs="?", help="service name (default: every service)")
    _add_output_option(p)
    p = serve_command("rollout", cmd_serve_rollout,
                      "a judged rollout: its steps and figures (status), or step in: abort "
                      "(the stable version keeps all traffic) or promote (the new one gets it)")
    p.add_argument("action", choices=["status", "abort", "promote"], help="what to do")
    p.add_argument("name", help="service name")
    _add_output_option(p)
    p = serve_command("delete", cmd_serve_delete, "delete a service and all its versions")
    p.add_argument("name", help="service name")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    return parser


def _complete_cluster_names(parser: argparse.ArgumentParser, *, names: bool = True) -> None:
    """Attach :func:`cluster_names` to every argument that names a cluster: ``--cluster``,
    and a positional ``name`` except below ``serve`` (there it names a service)."""
    for action in parser._actions:
        if action.dest == "cluster" or (names and action.dest == "name"):
            action.completer = cluster_names  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for command, child in action.choices.items():
                _complete_cluster_names(child, names=names and command != "serve")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI runner cancelling a step, ``kill``), raised where the process is, as
    Ctrl-C is, so every command's clean-up runs: an interrupted ``up`` stops what it started,
    an interrupted ``job submit`` stops its job, an interrupted ``serve deploy`` puts back
    what ran before."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (130 after Ctrl-C, 143 after SIGTERM)."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
        import argcomplete

        _complete_cluster_names(parser)
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if args.verbose:
        logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args.handler(args))
    except RaykubeError as exc:
        if os.environ.get("RAYKUBE_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
