"""Hostile and careless input (issue: security): refused at the root with the field and the
fix, before anything is created; secrets and state kept private; tokens sent only where they
belong. Each test here failed on the code before its fix."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import assert_clean_error, run_cli
from raykube.backends.local.state import LocalRecord, Ports, clusters_dir, ray_temp_dir
from raykube.dashboard import DashboardClient
from raykube.errors import BackendError, SpecError
from raykube.render.cluster import render_raycluster
from raykube.render.serve_config import belongs_to
from raykube.specs.cluster import load_spec, parse_spec
from raykube.specs.serve import parse_serve_spec
from raykube.target import resolve

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def cluster_with(**group: Any) -> dict[str, Any]:
    """A cluster spec (as parsed YAML) with one worker group carrying ``group``'s fields."""
    return {"name": "demo", "workerGroupSpecs": [{"groupName": "g", "replicas": 1, **group}]}


# ---- no injection into KubeRay's `bash -c` start line ------------------------------------

HOSTILE = [
    "A100'; touch /tmp/pwned; echo '", "1; touch /tmp/pwned", "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`", "a b", "x|y", "x&y", "x>y", "x<y", "*", "?", "~root", "!x", "x\ny",
    "'", '"', "\\", "#x", "{a,b}", "\t",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_metacharacters_in_start_params_are_refused(value: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(cluster_with(rayStartParams={"object-manager-port": "2384", "block": value}))
    assert "rayStartParams['block']" in caught.value.message
    assert "shell" in caught.value.message


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_metacharacters_in_accelerator_type_and_labels_are_refused(value: str) -> None:
    with pytest.raises(SpecError, match="acceleratorType"):
        parse_spec(cluster_with(gpu=1, acceleratorType=value))
    with pytest.raises(SpecError, match="label"):
        parse_spec(cluster_with(labels={"zone": value}))


@pytest.mark.parametrize("params", [
    {"no such flag": "1"}, {"--num-cpus": "1"}, {"resources": '{"a b": 1}'},
    {"resources": "{\"x'\": 1}"}, {"resources": "[1]"}, {"resources": '{"a": -1}'},
    {"port": "http"}, {"dashboard-port": "99999"}, {"num-cpus": "two"},
])
def test_start_params_must_be_ray_flags_with_safe_typed_values(params: dict[str, str]) -> None:
    with pytest.raises(SpecError, match="rayStartParams"):
        parse_spec(cluster_with(rayStartParams=params))


def test_the_heads_resources_param_is_rendered_as_one_word() -> None:
    spec = parse_spec({"name": "demo", "headGroupSpec": {"rayStartParams": {
        "num-cpus": "0", "resources": '{"head_only": 1, "b": 2.5}'}}})
    rendered = render_raycluster(spec)["spec"]["headGroupSpec"]["rayStartParams"]["resources"]
    assert rendered == '\'{"b":2.5,"head_only":1}\''


def kuberay_start_line(params: dict[str, str]) -> str:
    """The start line as KubeRay builds it: every param pasted in as --KEY=VALUE, unquoted."""
    return "ray start --block " + " ".join(f"--{k}={v}" for k, v in params.items())


def test_the_rendered_start_line_runs_nothing_but_ray_start(tmp_path: Path) -> None:
    """Values raykube accepts, rendered as KubeRay renders them and run by a real bash: `ray`
    gets exactly these arguments and nothing else runs."""
    spec = parse_spec(cluster_with(
        gpu=1, acceleratorType="Intel-GPU-Max-1550", labels={"example.com/zone": "eu-1.b"},
        rayStartParams={"resources": '{"tpu:v4/x": 2, "Custom_1": 0.5}',
                        "object-store-memory": "100000000", "node-ip-address": "10.0.0.5"}))
    params = render_raycluster(spec)["spec"]["workerGroupSpecs"][0]["rayStartParams"]
    canary = tmp_path / "ran"
    script = f'ray() {{ printf "%s\\n" "$@"; }}; {kuberay_start_line(params)}; test -e {canary}'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode == 1, "the canary file does not exist: nothing else ran"
    words = done.stdout.splitlines()
    resources = json.loads(next(w for w in words if w.startswith("--resources="))
                           .removeprefix("--resources="))
    assert resources == {"Custom_1": 0.5, "accelerator_type:Intel-GPU-Max-1550": 1,
                         "group:g": 1000, "tpu:v4/x": 2}
    assert words[:2] == ["start", "--block"] and "--node-ip-address=10.0.0.5" in words
    assert len(words) == 2 + len(params), "every param stayed one word"


# ---- paths and state --------------------------------------------------------------------

def test_a_cluster_name_is_never_a_path(tmp_path: Path) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "cluster.json").write_text("{}")
    escape = os.path.relpath(decoy, clusters_dir())
    assert_clean_error(run_cli("down", escape), 2, "not a valid Kubernetes name")
    assert (decoy / "cluster.json").exists(), "nothing outside raykube's folder was touched"


def record(name: str) -> LocalRecord:
    return LocalRecord(name=name, marker=f"{name}-0123456789ab", node_ip="127.0.0.1",
                       ports=Ports(1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009),
                       temp_dir=str(ray_temp_dir(name)), token_path="/nonexistent",
                       spec_yaml="name: x\n", targets={}, head_node_id="0" * 56)


def test_one_bad_record_is_reported_and_skipped() -> None:
    record("rk-fine").save()
    broken = clusters_dir() / "rk-broken-json"
    broken.mkdir(mode=0o700)
    (broken / "cluster.json").write_text("{not json")
    elsewhere = record("rk-elsewhere")
    elsewhere.save()
    tampered = json.loads((elsewhere.folder / "cluster.json").read_text())
    tampered["temp_dir"] = "/home"
    (elsewhere.folder / "cluster.json").write_text(json.dumps(tampered))
    try:
        listed = run_cli("list")
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line.split()[2] for line in listed.stdout.splitlines()[1:]}
        mine = {n: rows.get(n) for n in ("rk-broken-json", "rk-elsewhere", "rk-fine")}
        assert mine == {"rk-broken-json": "unreadable", "rk-elsewhere": "unreadable",
                        "rk-fine": "dead"}
        assert run_cli("status").returncode == 0
        with pytest.raises(BackendError, match="names another cluster's folders"):
            LocalRecord.load("rk-elsewhere")
        gone = run_cli("down", "rk-elsewhere")
        assert gone.returncode == 0 and Path("/home").is_dir()
    finally:
        for name in ("rk-fine", "rk-broken-json", "rk-elsewhere"):
            run_cli("down", name)


def test_local_state_is_private() -> None:
    saved = record("rk-private")
    saved.save()
    try:
        for folder in (clusters_dir(), saved.folder):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        assert stat.S_IMODE((saved.folder / "cluster.json").stat().st_mode) == 0o600
    finally:
        saved.remove()


# ---- names that collide -----------------------------------------------------------------

def serve(**changes: Any) -> dict[str, Any]:
    return {"kind": "Serve", "name": "foo", "framework": "torch", "predictor": "m:P",
            "versions": [{"version": "v1", "checkpoint": "/c", "weight": 100}], "replicas": 1,
            **changes}


def test_service_and_version_names_cannot_hold_the_separator() -> None:
    with pytest.raises(SpecError, match="'--'"):
        parse_serve_spec(serve(name="foo--bar"))
    with pytest.raises(SpecError, match="'--'"):
        parse_serve_spec(serve(versions=[{"version": "a--b", "checkpoint": "/c"}]))
    assert belongs_to("foo", "foo") and belongs_to("foo--v1", "foo")
    assert not belongs_to("foo--bar--v1", "foo") and not belongs_to("foobar", "foo")


# ---- specs raykube must refuse, quickly and briefly --------------------------------------

BAD_SPECS = {
    "env-equals.yaml": yaml.safe_dump(cluster_with(env={"A=B": "1"})),
    "env-nul.yaml": yaml.safe_dump(cluster_with(env={"A": "x\0y"})),
    "replicas.yaml": yaml.safe_dump(cluster_with(replicas=10**21, maxReplicas=10**21)),
    "kind.yaml": "kind: [x]\nname: demo\n",
    "deep.yaml": "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "bomb.yaml": "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                 "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                 "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                 "name: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
}


@pytest.mark.parametrize("file", sorted(BAD_SPECS))
@pytest.mark.parametrize("command", ["spec", "manifest", "up"])
def test_bad_specs_get_a_short_clear_error_at_once(tmp_path: Path, file: str,
                                                    command: str) -> None:
    path = tmp_path / file
    path.write_text(BAD_SPECS[file])
    started = time.monotonic()
    result = run_cli(command, str(path), timeout=60)
    assert_clean_error(result, 2, str(path))
    assert time.monotonic() - started < 15, "refused at once (the CLI's own start included)"
    assert len(result.stderr) < 2000, result.stderr[:300]


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: d\u00e9mo\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


def test_bad_cli_values_are_refused(tmp_path: Path) -> None:
    assert_clean_error(run_cli("job", "submit", "--cluster", "nope", "--runtime-env-json",
                               "{not json", "--", "true"), 2, "--runtime-env-json is not JSON")
    assert_clean_error(run_cli("job", "submit", "--cluster", "nope", "--runtime-env-json",
                               "[1]", "--", "true"), 2, "must be a JSON object")
    spec = ROOT / "jobs" / "digits.serve.yaml"
    assert_clean_error(run_cli("serve", "deploy", str(spec), "--weight", "v1=abc"), 2,
                       "whole percent")


# ---- the token goes only where it belongs ------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's Authorization header; redirects when told to."""

    seen: list[str | None] = []
    redirect_to: str | None = None

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).seen.append(self.headers.get("Authorization"))
        if type(self).redirect_to:
            self.send_response(302)
            self.send_header("Location", type(self).redirect_to + self.path)
            self.end_headers()
            return
        body = b'{"data": {"result": {"result": []}}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def servers() -> Iterator[tuple[str, type[_Recorder], type[_Recorder]]]:
    """Two recording HTTP servers on loopback; the first redirects to the second."""
    second = type("Second", (_Recorder,), {"seen": [], "redirect_to": None})
    httpd2 = http.server.ThreadingHTTPServer(("127.0.0.2", 0), second)
    first = type("First", (_Recorder,), {
        "seen": [], "redirect_to": f"http://127.0.0.2:{httpd2.server_address[1]}"})
    httpd1 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), first)
    for httpd in (httpd1, httpd2):
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd1.server_address[1]}", first, second
    for httpd in (httpd1, httpd2):
        httpd.shutdown()


def test_a_redirect_is_not_followed_with_the_token(servers: Any, tmp_path: Path) -> None:
    url, first, second = servers
    token = tmp_path / "token"
    token.write_text("s3cret")
    with pytest.raises(BackendError, match="redirect"):
        DashboardClient(url, str(token)).nodes()
    assert first.seen == ["Bearer s3cret"] and second.seen == [], "the token stayed put"


def test_an_unknown_url_gets_no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("users-own-token")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert resolve("http://attacker.example:8265").dashboard() == (
        "http://attacker.example:8265", None)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "named"))
    assert resolve("http://10.1.2.3:8265").dashboard()[1] == str(tmp_path / "named"), \
        "a token the user named for it goes"


# ---- pods run with least privilege ---------------------------------------------------------

@pytest.mark.parametrize("autoscaling", [False, True])
def test_pods_are_restricted_and_only_the_autoscaler_gets_an_api_token(autoscaling: bool
                                                                       ) -> None:
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    spec.enable_in_tree_autoscaling = autoscaling
    body = render_raycluster(spec)["spec"]
    head = body["headGroupSpec"]["template"]["spec"]
    assert head["automountServiceAccountToken"] is autoscaling, "Ray's autoscaler needs the API"
    for group in [body["headGroupSpec"], *body["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        for container in pod["containers"]:
            assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}
    for group in body["workerGroupSpecs"]:
        assert group["template"]["spec"]["automountServiceAccountToken"] is False


# ---- one request cannot take a service down --------------------------------------------------

@pytest.mark.parametrize(("body", "words"), [
    (b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested deeper than 8"),
    (b'{"instances": [[' + b"1" * 5000 + b"]]}", "not valid JSON"),
    (b'{"instances": [[1e39]]}', "not a finite float32"),
    (json.dumps({"instances": [[0]] * 5000}).encode(), "at most 4096"),
    (json.dumps({"instances": [["x" * 10_000]]}).encode(), "not a number"),
])
def test_request_bodies_are_bounded(body: bytes, words: str) -> None:
    from raykube.serving.app import InvalidInput, parse_instances

    with pytest.raises(InvalidInput, match=words) as caught:
        parse_instances(body)
    assert len(str(caught.value)) < 300, "a bad value is never echoed whole"


# ---- secrets stay out of plain text ----------------------------------------------------------

def spec_with_secrets() -> Any:
    data = cluster_with(env={"LITERAL": "hunter2",
                             "DB_PASSWORD": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        envFrom=[{"secretRef": "cloud-keys"}, {"configMapRef": "settings"}])
    data["headGroupSpec"] = {"env": {"HEAD_LITERAL": "hunter3"}}
    return parse_spec(data)


def test_env_from_secrets_renders_as_references_and_never_into_the_spec_pods_see() -> None:
    import jsonschema

    manifest = render_raycluster(spec_with_secrets())
    crd = yaml.safe_load((ROOT.parent / "shared" / "k8s" / "crds" /
                          "ray.io_rayclusters.yaml").read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]
    jsonschema.validate(manifest, schema["openAPIV3Schema"])
    worker = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in worker["env"]}
    assert env["DB_PASSWORD"] == {"name": "DB_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "db", "key": "password"}}}
    assert worker["envFrom"] == [{"secretRef": {"name": "cloud-keys"}},
                                 {"configMapRef": {"name": "settings"}}]
    for group in [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]:
        container = group["template"]["spec"]["containers"][0]
        carried = next(e["value"] for e in container["env"] if e["name"] == "RAYKUBE_SPEC")
        assert "hunter" not in carried and "DB_PASSWORD" not in carried
        assert parse_spec(yaml.safe_load(carried)).worker_group("g").replicas == 1


@pytest.mark.parametrize(("options", "words"), [
    ({"rayStartParams": {"redis-password": "pw"}}, "redis-password"),
])
def test_inline_redis_credentials_are_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec({"name": "demo", "headGroupSpec": options})


@pytest.mark.parametrize("address", ["redis://:pw@redis:6379", "user:pw@redis:6379"])
def test_a_redis_address_with_credentials_is_refused(address: str) -> None:
    with pytest.raises(SpecError, match="redisPassword.secretName"):
        parse_spec({"name": "demo", "gcsFaultToleranceOptions": {"redisAddress": address}})


def test_the_local_head_gets_no_credentials_but_those_forwarded() -> None:
    from raykube.backends.local.environment import head_environment

    caller = {"PATH": "/usr/bin", "HOME": "/root", "RAY_TRAIN_X": "1", "AWS_SECRET_ACCESS_KEY": "a",
              "GITHUB_TOKEN": "b", "KUBECONFIG": "/k", "MY_API_KEY": "c", "DB_PASSWORD": "d",
              "RAY_ADDRESS": "10.0.0.1:6379", "RAY_AUTH_TOKEN": "other-cluster"}
    spec = spec_with_secrets()
    head = spec.head_group_spec.model_copy(update={"env": {
        "DB_PASSWORD": spec.worker_group("g").env["DB_PASSWORD"], "HEAD_LITERAL": "x"}})
    env, dropped = head_environment(caller, head)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "RAY_TRAIN_X": "1",
                   "DB_PASSWORD": "d", "HEAD_LITERAL": "x"}
    assert dropped == ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "KUBECONFIG", "MY_API_KEY"]
    with pytest.raises(SpecError, match="forwarded from your environment"):
        head_environment({"PATH": "/usr/bin"}, head)


def test_the_spec_raykube_keeps_and_passes_on_has_no_environment() -> None:
    public = spec_with_secrets().public().to_yaml()
    assert "hunter" not in public and "secretKeyRef" not in public and "cloud-keys" not in public


# ---- who may use a KubeRay cluster -------------------------------------------------------------

def test_every_ray_container_and_the_autoscaler_get_the_token_from_its_secret() -> None:
    spec = load_spec(ROOT / "clusters" / "local.yaml")  # autoscaling on
    body = render_raycluster(spec)["spec"]
    expected = [{"name": "RAY_AUTH_MODE", "value": "token"},
                {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {
                    "name": "local-ray-token", "key": "auth_token"}}}]
    for group in [body["headGroupSpec"], *body["workerGroupSpecs"]]:
        assert group["template"]["spec"]["containers"][0]["env"][:2] == expected
    assert body["autoscalerOptions"]["env"] == expected
    assert "dashboard-host" in body["headGroupSpec"]["rayStartParams"]
    named = parse_spec({**yaml.safe_load((ROOT / "clusters" / "local.yaml").read_text()),
                        "authOptions": {"secretName": "team-token"}})
    assert named.token_secret == "team-token"


def test_service_type_is_kubernetes_own_and_exposure_needs_auth() -> None:
    with pytest.raises(SpecError, match="serviceType"):
        parse_spec({"name": "demo", "headGroupSpec": {"serviceType": "Public"}})
    with pytest.raises(SpecError, match="reachable from outside"):
        parse_spec({"name": "demo", "headGroupSpec": {"serviceType": "LoadBalancer"},
                    "authOptions": {"mode": "disabled"}})
    open_inside = parse_spec({"name": "demo", "authOptions": {"mode": "disabled"}})
    assert open_inside.token_secret is None
    env = render_raycluster(open_inside)["spec"]["headGroupSpec"]["template"]["spec"][
        "containers"][0]["env"]
    assert not any(e["name"].startswith("RAY_AUTH") for e in env)


def test_a_network_policy_admits_only_the_clusters_own_pods() -> None:
    from raykube.render.cluster import render_all

    spec = load_spec(ROOT / "clusters" / "local.yaml")
    spec.network_policy = True
    policy = next(o for o in render_all(spec) if o["kind"] == "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"ray.io/cluster": "local"}}
    assert rules[0] == {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "local"}}}]}
    assert [r["ports"][0]["port"] for r in rules[1:]] == [8000, 8080]


def test_job_submit_keeps_each_argument_whole() -> None:
    from raykube.cli import entrypoint_of

    argv = ["--", "python", "-c", "import sys; print(sys.argv[1:])", "a b", "it's", "$HOME"]
    line = entrypoint_of(argv)
    done = subprocess.run(["bash", "-c", line.replace("python", "python3", 1)],
                          capture_output=True, text=True)
    assert done.stdout.strip() == "['a b', \"it's\", '$HOME']"
    assert entrypoint_of(["--", "echo a && echo b"]) == "echo a && echo b"


def test_env_exports_survive_eval_whatever_the_values() -> None:
    from raykube.cli import exports

    values = {"RAY_AUTH_TOKEN_PATH": "/home/a b/$(touch pwned)/'tok'", "X": "; rm -rf /"}
    script = exports(values) + 'printf "%s\\n" "$RAY_AUTH_TOKEN_PATH" "$X"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines() == list(values.values())
