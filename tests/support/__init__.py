"""Test support code: the emulated Kubernetes API server and its pytest fixtures."""
