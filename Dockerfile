# syntax=docker/dockerfile:1.7
# jeffrey-operator image. One image, three console scripts:
#   jeffrey-operator run   (the default: ENTRYPOINT + CMD)
#   jeffrey-module-sim     (module simulator for the kind demo: command: ["jeffrey-module-sim"])
#   jeffreyctl
#
# Build: docker build -t jeffrey-operator:dev .      (make image)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------- builder
# Builds the project's wheel and the wheels of all its dependencies. Every dependency ships
# manylinux wheels for CPython 3.11, so no compiler is needed here either.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# README.md* : the glob keeps the build working while the README is absent.
COPY pyproject.toml README.md* ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

# ------------------------------------------------------------------------------------------ final
FROM ${PYTHON_IMAGE} AS final
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jeffrey-operator" \
      org.opencontainers.image.description="Progressive, health-gated integration of Jeffrey OS modules on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# Install only the wheels built above (no index, no sources, no build tools), then drop the
# packaging tools the running image does not need. Versions are those the builder resolved; the
# wheel directory holds exactly one version of each, so there is nothing to pin here.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels jeffrey-operator \
    && pip uninstall --yes setuptools wheel pip \
    && groupadd --system --gid 10001 jeffrey \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin jeffrey

WORKDIR /tmp
USER 10001:10001
# 8080 health (/healthz), 9090 operator metrics, 8000 module simulator metrics and /fault.
EXPOSE 8080 9090 8000
ENTRYPOINT ["jeffrey-operator"]
CMD ["run"]
