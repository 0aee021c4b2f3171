"""Backends: where a cluster runs. See :mod:`raykube.backends.base` for the interface."""
