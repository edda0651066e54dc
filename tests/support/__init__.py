"""Test support code: pytest fixtures around the embedded API server (:mod:`imagescan.apiserver`)."""
