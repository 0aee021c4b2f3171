"""The spec kinds users write in YAML: a cluster (:mod:`~raykube.specs.cluster`), a job for
KubeRay (:mod:`~raykube.specs.job`) and a model service (:mod:`~raykube.specs.serve`), all read
and validated by the one loader of :mod:`~raykube.specs.base`.

Specs are pure data: nothing here touches a cluster. Rendering them into Kubernetes objects or
Serve configs is :mod:`raykube.render`'s job.
"""
