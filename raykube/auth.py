"""Ray token authentication, handled on purpose rather than switched off.

Ray 2.60 protects the GCS, the dashboard and the Jobs API with a bearer token. raykube starts
local clusters with ``RAY_AUTH_MODE=token`` and the user's Ray token (``~/.ray/auth_token``, or
``RAY_AUTH_TOKEN_PATH``), creating it with Ray's own generator when missing, so Ray's CLI
(`ray job submit`) and ``ray.init`` work against raykube clusters exactly as Ray documents.
The token itself is never printed: clients are told where it lives.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def token_path() -> Path:
    """Where Ray looks for the token: ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    configured = os.environ.get(TOKEN_PATH_ENV)
    return Path(configured) if configured else Path.home() / ".ray" / "auth_token"


def ensure_token() -> Path:
    """Return the token file, creating it (mode 0600) with Ray's generator when missing."""
    path = token_path()
    if not path.exists():
        from ray._private.authentication.authentication_token_generator import (
            generate_new_authentication_token,
        )

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_new_authentication_token())
    return path


def read_token(path: str | Path) -> str:
    """The token in ``path``, without surrounding whitespace."""
    return Path(path).read_text().strip()


def client_env(path: str | Path | None) -> dict[str, str]:
    """Environment a Ray client (CLI, driver, job) needs to reach a cluster using ``path``."""
    if path is None:
        return {AUTH_MODE_ENV: "disabled"}
    return {AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: str(path)}


def apply_client_env(path: str | Path | None) -> None:
    """Make this process a client of a cluster using ``path``: set the auth environment and,
    when Ray is already imported, refresh the settings Ray cached at import (as Ray itself does
    when it turns token auth on)."""
    os.environ.update(client_env(path))
    if "ray" in sys.modules:
        from ray._private.authentication.authentication_token_setup import (  # noqa: PLC0415
            AuthenticationTokenLoader,
        )
        from ray._raylet import Config  # noqa: PLC0415

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
