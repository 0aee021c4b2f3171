"""The KubeRay backend (Kubernetes)."""
