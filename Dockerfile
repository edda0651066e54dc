# syntax=docker/dockerfile:1
# The operator's production image. Only the runtime dependencies (not the `sandbox` or `test` extras), at the
# versions pinned in deploy/image/constraints.txt, installed into a virtualenv in a throwaway stage; the final
# stage gets that virtualenv and nothing else: no pip, no wheel builds, no caches. Runs as a non-root user.
#   docker build -t imagescan-operator .
# Linted with hadolint (tests/unit/test_packaging.py).

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# A virtualenv without pip of its own: the builder's pip installs into it, so none is copied into the image.
RUN python -m venv --without-pip /opt/imagescan
# Dependencies first, from the pinned set alone, so this layer is reused while only the operator's code changes.
COPY deploy/image/constraints.txt /src/constraints.txt
RUN pip --python /opt/imagescan/bin/python install --no-deps --requirement constraints.txt
# Then the operator, without letting pip pick anything not already pinned; `pip check` fails the build if the
# constraints no longer satisfy pyproject.toml's dependencies.
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
RUN pip --python /opt/imagescan/bin/python install --no-deps --constraint constraints.txt . \
    && pip --python /opt/imagescan/bin/python check

FROM python:3.11-slim-bookworm
# The base image's own pip (and setuptools/wheel) are build tools the operator never uses.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
    && groupadd --system --gid 10001 imagescan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin imagescan
COPY --from=builder /opt/imagescan /opt/imagescan
# The Deployment runs with a read-only root filesystem; /tmp is an emptyDir there.
ENV PATH=/opt/imagescan/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
# Metrics, /healthz and /readyz (--http-port); the webhook's 9443 only when --webhook-port is given.
EXPOSE 8080
ENTRYPOINT ["imagescan", "run"]
# The Deployment (deploy/base, the Helm chart) passes its own args; these are the same defaults.
CMD ["--all-namespaces", "--http-port=8080", "--log-format=json", "--leader-election"]
