"""Local stand-in for EC2 Image Builder, the Amazon Inspector2 account-status API and ECR DescribeImages.

No public emulator (moto, LocalStack community) implements Image Builder, yet the operator's tests, demos and
benchmarks need one that the *real* boto3 client can talk to through ``endpoint_url``. One emulator holds
several AWS accounts and regions: each request acts for the account behind its access key, in the region it
was signed for. Modules:

* ``protocol``  - botocore service models: routing, request decoding, response encoding (REST-JSON, JSON).
* ``validation`` - checks every request against botocore's input shapes, like the real front end does.
* ``errors``    - the ``ApiError`` exception that becomes an AWS error response.
* ``identity``  - who calls: access key -> account (explicit map or STS GetCallerIdentity), signing region.
* ``generator`` - seeded, realistic pipelines, images and Inspector findings.
* ``world``     - the thread-safe state the operations read and mutate, in any number of accounts/regions.
* ``activation`` - Inspector's per-account, per-region states (ENABLING -> ENABLED, ...) on a steppable clock.
* ``imagebuilder`` / ``inspector`` / ``ecr`` - the operation handlers, each given the world and the caller.
* ``audit``     - call log, update log and before-update hooks for reliability tests.
* ``events``    - the EventBridge events Image Builder and Inspector send for builds and scans.
* ``sink``      - delivers those events to an SQS queue (moto's server in tests), as an EventBridge rule does.
* ``ratelimit`` - AWS's per-operation call-rate quotas as token buckets, for benchmarks.
* ``server``    - the HTTP server, fault injection, latency, call counters and the CLI entry point.
* ``control``   - the same knobs over HTTP (``/_emulator/...``) for an emulator in another process.
"""
