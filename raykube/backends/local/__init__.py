"""The local (embedded) backend."""
from raykube.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
