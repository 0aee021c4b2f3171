"""Specs -> the objects that run them (pure functions, no API calls): a cluster spec ->
KubeRay's RayCluster and its PVC and PodMonitor (:mod:`~raykube.render.cluster`), a job spec ->
a RayJob (:mod:`~raykube.render.rayjob`), a serve spec -> a Serve config
(:mod:`~raykube.render.serve_config`) and a RayService with its PodDisruptionBudget
(:mod:`~raykube.render.rayservice`). ``raykube manifest SPEC`` prints them for ``kubectl apply``.
"""
