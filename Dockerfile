# The imagestream-controller image: one entry point, `imagestream`, whose
# `controller` and `webhook` subcommands the Helm chart runs.
#
#   docker build -t ghcr.io/imagestream-controller/imagestream-controller:0.1.0 .
#
# The builder installs the project's wheel into a virtual environment with
# every dependency pinned by constraints.txt; the final stage copies that
# environment onto the same slim Python base and runs as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY imagestream/ imagestream/
COPY controller/ controller/
COPY webhook/ webhook/
RUN python -m venv /opt/imagestream \
 && /opt/imagestream/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/imagestream/bin/pip install --constraint constraints.txt /tmp/wheels/*.whl \
 && /opt/imagestream/bin/imagestream version

# For `tilt up` only (tilt/Tiltfile builds `--target dev`): the installed
# sources belong to the runtime user, so Tilt's live update can replace them.
FROM ${PYTHON_IMAGE} AS dev
ENV PATH=/opt/imagestream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder --chown=65532:65532 /opt/imagestream /opt/imagestream
USER 65532:65532
# Run the process in a loop: Tilt's live update syncs new sources, then stops
# the process (its pid is in /tmp), and the loop starts it on the new code.
ENTRYPOINT ["/bin/sh", "-c", "trap 'kill -TERM $pid; wait $pid; exit 0' TERM INT; while :; do imagestream \"$@\" & pid=$!; echo $pid > /tmp/imagestream.pid; wait $pid; sleep 1; done", "imagestream"]

# The released image (the default target): sources owned by root, read-only.
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="imagestream-controller" \
      org.opencontainers.image.description="OpenShift ImageStreams and image-change triggers on any Kubernetes cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/imagestream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/imagestream /opt/imagestream
# The distroless "nonroot" uid/gid, which the chart's security context expects.
USER 65532:65532
# webhook, health (/healthz, /readyz), metrics (/metrics)
EXPOSE 8080 8081 9090
ENTRYPOINT ["imagestream"]
CMD ["--help"]
