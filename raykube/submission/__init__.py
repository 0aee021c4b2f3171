"""Jobs on a cluster: Ray's Jobs API on any cluster (:mod:`~raykube.submission.jobs`), and
KubeRay's RayJob on Kubernetes (:mod:`~raykube.submission.rayjob`)."""
