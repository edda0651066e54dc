"""imagescan-operator: EC2 Image Builder pipelines scanned by Amazon Inspector, declared in Kubernetes.

The package is laid out so data flows one way: ``models`` (what the user declares) -> ``reconcile``
(desired vs observed AWS state, the delta, the call that closes it) -> ``handlers`` (kopf glue that writes
status). ``aws`` wraps boto3 and never imports kopf; ``emulator`` speaks Image Builder's wire protocol for tests.
"""

GROUP = "imagescan.io"
VERSION = "v1alpha1"
