"""An embedded, in-memory Kubernetes API server that real clients can talk to.

Why it exists: the operator must be exercised for real (kopf, the ``kubernetes``
client and ``kubectl`` speaking HTTP to something that behaves like Kubernetes)
where no kube-apiserver can be installed. It started as test support code; it
lives in the package because ``imagescan sandbox`` runs it too, so a newcomer can
point ``kubectl`` at a local "cluster" with the project's CRDs and see the
operator work, with no cluster and no AWS account.

Kept honest by tests/kubeapi/test_differential.py, which sends the same requests to it and to a real
kube-apiserver and lists the differences kept on purpose (KNOWN_DIFFERENCES).

It extends kmock 0.8 (pinned: this builds on its internals) with what kmock lacks
and kubectl users touch. Modules:

* ``server``    - the HTTP layer (routing, watches, discovery) and :class:`ApiServer`,
  which serves it from a background thread;
* ``store``     - objects, resource types, resourceVersions and watch history, with
  the write semantics of the real server (conflicts, status subresource, finalizers);
* ``schema``    - CRD structural schemas: defaulting, pruning and validation;
* ``cel``       - CRD validation rules (``x-kubernetes-validations``), evaluated with cel-python;
* ``admission`` - validating admission webhooks (``ValidatingWebhookConfiguration``), called over HTTPS
  as kube-apiserver calls them; nothing runs while no configuration is stored;
* ``objectops`` - patches (JSON, merge) and label/field selectors;
* ``tables``    - server-side printing: ``meta.k8s.io/v1`` Tables and the JSONPath
  subset of ``additionalPrinterColumns`` (``kubectl get``);
* ``openapi``   - OpenAPI v3 documents built from the CRDs (``kubectl explain``,
  kubectl's client-side validation).
"""

from imagescan.apiserver.server import ApiServer

__all__ = ['ApiServer']
