"""Admission gating by FindingsPolicy: refuse, warn about or audit workloads that run images whose pipeline
breaks a policy.

Kept apart from kopf (except ``server``) so that the decision is plain functions over what the operator's
in-memory indexes already hold: an admission request must be answered within the webhook's timeout, so it
makes no AWS call and no Kubernetes API call.

* ``images``: parse and normalise image references, so that a pod's image and a pipeline's output URI
  compare equal when they name the same repository and tag;
* ``workloads``: find the pod spec (and its images) in Pods and every workload kind, and AMI ids in
  Karpenter EC2NodeClasses;
* ``decision``: judge the pipelines that built those images against the FindingsPolicies;
* ``tls``: a self-signed CA and serving certificate for when cert-manager does not provide one;
* ``intake``: read and screen each request before kopf does: size, encoding, depth, shape, operation;
* ``server``: kopf's webhook server behind that guard, so that every request gets a well-formed answer.
"""
