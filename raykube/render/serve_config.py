"""Serve spec -> Ray Serve config (the multi-application format ``serve build`` writes).

The same dict is what raykube PUTs to a cluster's Serve REST API and what a KubeRay RayService
holds as ``serveConfigV2``. A service becomes one *router* application on the service's route
(traffic shares, input checks, retries) and one application per version, with no route of its
own, holding that version's ``Model`` deployment. Keeping versions in separate applications
means adding, re-weighting or removing one never redeploys another; weights and batching travel
as ``user_config``, which Serve applies to running replicas in place.

Pure functions: nothing here touches a cluster.
"""

from __future__ import annotations

from typing import Any

from raykube import frameworks
from raykube.specs.serve import APP_SEPARATOR, ServeSpec, model_app_name

ROUTER_IMPORT_PATH = "raykube.serving.app:router_app"
MODEL_IMPORT_PATH = "raykube.serving.app:model_app"
ROUTER_DEPLOYMENT = "Router"
MODEL_DEPLOYMENT = "Model"

ROUTER_REPLICAS = 1
"""Router replicas per service. Two would let the service outlive a lost router, but with two
the RayService rollout end-to-end test stalled every client for 30 s after the retire step in
2 of 5 runs (not yet understood), so one, as before, until that is found."""

HA_PROXY_LOCATION = "EveryNode"
"""Where Serve runs its HTTP proxies on a cluster that survives head loss (GCS fault
tolerance), on both backends: on every node with a replica, so a node's replicas answer
through its own proxy while the head is down. Local nodes share one address; Serve's proxies
bind it with SO_REUSEPORT and the kernel spreads connections over them. Elsewhere each backend
says where (:attr:`~raykube.backends.base.Capabilities.serve_proxy_location`): locally the
head only, because the kernel also queues connections for a proxy that Serve is draining (a
node that lost its last replica), and those were seen to fail during rollouts."""

HA_ROUTER_CPUS = 0.01
"""What a router replica reserves on a cluster that survives head loss. A replica that reserves
nothing is placed on the head (where the Serve controller that starts it runs), so losing the
head would take every service's router with it; a sliver of CPU keeps it on a worker (heads
run with ``num-cpus: 0``). Elsewhere the router reserves nothing, so it never holds a worker
node (a GPU one, say) up on its own."""

SERVE_FAST_PATH_ENV = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}
"""Serve's throughput settings every raykube node starts with (locally the head's environment,
which its nodes inherit; on Kubernetes each Ray container's): the part of Ray 2.60's
``RAY_SERVE_THROUGHPUT_OPTIMIZED`` that leaves how user code runs alone. Serve's proxies call a
service's router over gRPC (as the router calls its versions whatever this says: see
:func:`raykube.serving.app.version_handle`), a handle's routing runs on its caller's event
loop, and request logs go to Serve's log files only, written 1,000 lines at a time (an error
at once). Left out: user code on the replica's own event loop (a slow predictor would stall
its health checks) and direct ingress (it replaces Serve's proxies, which route a service's
path). Measured by ``python -m benchmarks`` against Ray's defaults; a group's ``env`` (or,
locally, the caller's environment) overrides each one."""

REPLICA_ENV = {"OMP_NUM_THREADS": "1"}
"""Environment every replica starts with, beside its framework's worker environment: one math
thread per replica (Serve scales by replicas, not threads)."""


def router_user_config(spec: ServeSpec, weights: dict[str, int] | None = None,
                       rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the router applies in place: the traffic shares (default: the spec's), and the
    record of the service's last judged rollout, kept where ``serve status`` reads it."""
    config: dict[str, Any] = {"weights": dict(spec.weights if weights is None else weights)}
    if rollout is not None:
        config["rollout"] = rollout
    return config


def _model_deployment(spec: ServeSpec) -> dict[str, Any]:
    actor_options: dict[str, Any] = {"num_cpus": spec.resources.cpus}
    if spec.resources.gpus:
        actor_options["num_gpus"] = spec.resources.gpus
    if spec.resources.accelerator_type:
        actor_options["accelerator_type"] = spec.resources.accelerator_type
    deployment: dict[str, Any] = {
        "name": MODEL_DEPLOYMENT,
        "max_ongoing_requests": spec.max_ongoing_requests,
        "ray_actor_options": actor_options,
        "health_check_period_s": spec.health_check_period_s,
        "health_check_timeout_s": spec.health_check_timeout_s,
        "user_config": {
            "max_batch_size": spec.batching.max_batch_size,
            "batch_wait_timeout_s": spec.batching.batch_wait_timeout_s,
        },
    }
    if spec.autoscaling is not None:
        scaling = spec.autoscaling
        deployment["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
        }
    else:
        deployment["num_replicas"] = spec.replicas
    return deployment


def _runtime_env(spec: ServeSpec, working_dir: str | None, py_executable: str | None
                 ) -> dict[str, Any]:
    runtime_env = dict(spec.runtime_env)
    runtime_env["env_vars"] = {
        **REPLICA_ENV, **frameworks.get(spec.framework).worker_env,
        **runtime_env.get("env_vars", {}),
    }
    if working_dir:
        runtime_env["working_dir"] = working_dir
    if py_executable:
        runtime_env["py_executable"] = py_executable
    return runtime_env


def render_applications(
    spec: ServeSpec,
    *,
    versions: list[str] | None = None,
    weights: dict[str, int] | None = None,
    working_dir: str | None = None,
    py_executable: str | None = None,
    rollout: dict[str, Any] | None = None,
    router_off_head: bool = False,
) -> list[dict[str, Any]]:
    """The Serve applications of ``spec``: its router, then one per version.

    Args:
        versions: which versions' applications to include (default: all of the spec's); a
            rollout keeps old ones running while new ones start.
        weights: the router's traffic shares (default: the spec's).
        working_dir: the code's runtime-env ``working_dir`` as a URI the cluster can fetch
            (default: ``spec.working_dir`` when that is already a URI).
        py_executable: the replicas' Python (MXNet's own environment), if not the cluster's.
        rollout: the record of a judged rollout, kept in the router's config.
        router_off_head: keep the router off the head (see :data:`HA_ROUTER_CPUS`).
    """
    if working_dir is None and spec.working_dir and not spec.uses_local_working_dir():
        working_dir = spec.working_dir
    checkpoints = {v.version: v.checkpoint for v in spec.versions}
    router = {
        "name": spec.name,
        "route_prefix": spec.route,
        "import_path": ROUTER_IMPORT_PATH,
        "args": {"service": spec.name, "metrics": spec.metrics},
        "deployments": [{
            "name": ROUTER_DEPLOYMENT,
            "num_replicas": ROUTER_REPLICAS,
            "max_ongoing_requests": 1000,
            "ray_actor_options": {"num_cpus": HA_ROUTER_CPUS if router_off_head else 0},
            "user_config": router_user_config(spec, weights, rollout),
        }],
    }
    apps = [router]
    for version in versions if versions is not None else list(checkpoints):
        apps.append({
            "name": spec.app_name(version),
            "route_prefix": None,
            "import_path": MODEL_IMPORT_PATH,
            "args": {
                "predictor": spec.predictor,
                "checkpoint": checkpoints[version],
                "version": version,
                "framework": spec.framework,
            },
            "runtime_env": _runtime_env(spec, working_dir, py_executable),
            "deployments": [_model_deployment(spec)],
        })
    return apps


def render_serve_config(
    spec: ServeSpec,
    *,
    http_port: int = 8000,
    working_dir: str | None = None,
    survives_head_loss: bool = False,
) -> dict[str, Any]:
    """The whole Serve config for ``spec`` (``serve build`` format; RayService serveConfigV2);
    ``survives_head_loss``: for a cluster with GCS fault tolerance (see
    :data:`HA_PROXY_LOCATION`, :data:`HA_ROUTER_CPUS`).

    >>> render_serve_config(spec)["applications"][0]["route_prefix"]  # doctest: +SKIP
    '/digits'
    """
    return {
        "proxy_location": HA_PROXY_LOCATION,
        "http_options": {"host": "0.0.0.0", "port": http_port},
        "applications": render_applications(spec, working_dir=working_dir,
                                             router_off_head=survives_head_loss),
    }


def belongs_to(app_name: str, service: str) -> bool:
    """Whether Serve application ``app_name`` is ``service``'s router or one of its versions:
    exactly ``service``, or ``service--VERSION`` with no further separator (so deleting ``foo``
    never touches another service's ``foo--bar--v1``)."""
    if app_name == service:
        return True
    prefix = model_app_name(service, "")
    version = app_name[len(prefix):]
    return app_name.startswith(prefix) and bool(version) and APP_SEPARATOR not in version


def rollout_steps(before: list[dict[str, Any]], new_apps: list[dict[str, Any]],
                  service: str) -> list[list[dict[str, Any]]]:
    """The Serve application lists a rollout goes through, each applied and awaited in turn.

    ``before`` is every application the cluster runs now, ``new_apps`` the service's new ones
    (router first). A first deploy is one step. A rollout is three, so no request meets a
    version that is not up: *start* (new versions beside the old ones, the old router and
    traffic shares), *shift* (the new router and shares, old versions still up), *retire*
    (old versions gone). Other services' applications are carried through every step.
    """
    others = [a for a in before if not belongs_to(a["name"], service)]
    mine_before = {a["name"]: a for a in before if belongs_to(a["name"], service)}
    new_names = {a["name"] for a in new_apps}
    steps: list[list[dict[str, Any]]] = []
    if service in mine_before:
        retiring = [a for n, a in mine_before.items() if n not in new_names]
        steps.append(others + [mine_before[service]] + new_apps[1:] + retiring)
        steps.append(others + new_apps + retiring)
    steps.append(others + new_apps)
    unique: list[list[dict[str, Any]]] = []
    for step in steps:
        if not unique or unique[-1] != step:
            unique.append(step)
    return unique
