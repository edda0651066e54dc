"""Local stand-in for EC2 Image Builder and the Amazon Inspector2 account-status API.

No public emulator (moto, LocalStack community) implements Image Builder, yet the operator's tests, demos and
benchmarks need one that the *real* boto3 client can talk to through ``endpoint_url``. Modules:

* ``protocol``  - botocore service models: routing, request decoding, response encoding (REST-JSON).
* ``validation`` - checks every request against botocore's input shapes, like the real front end does.
* ``errors``    - the ``ApiError`` exception that becomes an AWS error response.
* ``generator`` - seeded, realistic pipelines, images and Inspector findings.
* ``world``     - the thread-safe state the operations read and mutate.
* ``imagebuilder`` / ``inspector`` - the operation handlers.
* ``server``    - the HTTP server, fault injection, latency, call counters and the CLI entry point.
"""
