"""kopf handlers: thin glue between Kubernetes events and the ``reconcile`` layer.

Handlers are registered into a registry by ``register()`` rather than at import time, so that the operator's
settings (resync tick, workers) shape them and tests can run several operators with fresh registries.
"""
