"""What a local cluster's processes inherit from the shell that started it.

Every job on a cluster runs with its nodes' environment, so the head must not pass on the
caller's credentials by accident: cloud keys, tokens, passwords, kubeconfigs. They are dropped,
and named in the progress output. A variable the cluster should have is named in the spec:
a literal in ``headGroupSpec.env``, or ``{secretKeyRef: ...}``, which on Kubernetes comes from
that Secret and here from the caller's variable of the same name (how a secret is forwarded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from raykube.errors import SpecError
from raykube.specs.cluster import HeadGroupSpec

CREDENTIAL = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|SESSION_KEY|AUTH)",
    re.IGNORECASE,
)
"""Variable names that hold a credential, whatever their prefix."""

CREDENTIAL_PREFIXES = ("AWS_", "AZURE_", "ARM_", "GOOGLE_", "GCP_", "GCLOUD_", "CLOUDSDK_",
                       "KUBECONFIG", "SSH_AUTH_SOCK", "VAULT_", "DOCKER_CONFIG")
"""Cloud and cluster credentials and agents by their usual names."""

OWN_SETTINGS = ("RAY_", "RAYKUBE_")
"""Ray's and raykube's settings, passed on (the token is by path, set by raykube itself)."""

NEVER = {"RAY_ADDRESS", "RAY_AUTH_TOKEN"}
"""Another cluster's address or token would point the cluster's own jobs elsewhere."""


def is_credential(name: str) -> bool:
    """Whether variable ``name`` looks like a credential."""
    return name.upper().startswith(CREDENTIAL_PREFIXES) or bool(CREDENTIAL.search(name))


def head_environment(caller: Mapping[str, str], head: HeadGroupSpec
                     ) -> tuple[dict[str, str], list[str]]:
    """The environment the head (and every node it starts) gets, and the caller's variables
    left out.

    Raises:
        SpecError: a variable the spec forwards (``secretKeyRef``/``configMapKeyRef``) is not
            in the caller's environment.
    """
    env: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in caller.items():
        if name in NEVER:
            continue
        if not name.startswith(OWN_SETTINGS) and is_credential(name):
            dropped.append(name)
            continue
        env[name] = value
    missing = []
    for name, value in head.env.items():
        if isinstance(value, str):
            env[name] = value
        elif name in caller:
            env[name] = caller[name]
        else:
            missing.append(name)
    if missing:
        raise SpecError(
            f"headGroupSpec.env {', '.join(missing)} come from a Secret or ConfigMap on "
            "Kubernetes; locally they are forwarded from your environment, where they are not set",
            f"export {missing[0]}=... before `raykube up`, or give a literal value",
        )
    return env, sorted(d for d in dropped if d not in head.env)
