# syntax=docker/dockerfile:1
# mlgate: the admission webhook server. Two stages: a build stage with pip, and a slim
# runtime holding only the virtualenv. Runs as a numeric non-root user and works with a
# read-only root filesystem: it writes only to /var/lib/mlgate (the data directory, an
# emptyDir in the chart) and /tmp.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mlgate
ENV PATH=/opt/mlgate/bin:$PATH
WORKDIR /src
# Dependencies in a layer of their own: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install -r requirements.txt
# Then the code (no dependency resolution again).
COPY README.md ./
COPY webhook ./webhook
COPY policies ./policies
RUN pip install --no-deps . \
 && python -m compileall -q /opt/mlgate

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlgate" \
      org.opencontainers.image.description="Kubernetes admission webhook for ML workloads" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/mlgate /opt/mlgate
ENV PATH=/opt/mlgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MLGATE_DATA_DIR=/var/lib/mlgate
RUN mkdir -p /var/lib/mlgate && chown 65532:65532 /var/lib/mlgate
# Relative paths (development certs/ when no TLS files are given) land in the data dir.
WORKDIR /var/lib/mlgate
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["mlgate"]
CMD ["serve"]
