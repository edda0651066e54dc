# syntax=docker/dockerfile:1
# imagescan operator image: build a wheel, install only the wheel in a slim runtime.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Only what the wheel needs.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /wheels /wheels
# Dependencies come from the index at image build time; only the operator itself is built locally.
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 imagescan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin imagescan
# The Deployment runs with a read-only root filesystem; /tmp is an emptyDir there.
ENV HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["imagescan", "run"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
