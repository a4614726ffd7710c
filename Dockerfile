# One image for every CallFS role: `callfs gateway|storage-node|link-service|dev`.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only for dependencies without a wheel for this platform; they stay in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/callfs
WORKDIR /src
COPY . .
# The server roles need the `server` extra (`pip install callfs` is the client alone),
# and tracing the `otel` one (imported only when tracing.otlp_endpoint is set);
# `config validate` imports the server's settings, so a missing extra fails the build.
# It checks secrets as the roles would: throwaway ones, for this command only.
RUN /opt/callfs/bin/pip install --upgrade pip \
    && /opt/callfs/bin/pip wheel --wheel-dir /wheels -c constraints.txt '.[server,otel]' \
    && /opt/callfs/bin/pip install --no-index --find-links /wheels 'callfs[server,otel]' \
    && /opt/callfs/bin/python -m compileall -q /opt/callfs/lib \
    && /opt/callfs/bin/callfs --help >/dev/null \
    && /opt/callfs/bin/callfs --version \
    && CALLFS_AUTH_API_KEYS=image-build-check-api-key \
       CALLFS_AUTH_INTERNAL_PROXY_SECRET=image-build-check-secret \
       CALLFS_AUTH_SINGLE_USE_LINK_SECRET=image-build-check-secret \
       /opt/callfs/bin/callfs config validate >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="callfs" \
      org.opencontainers.image.description="CallFS: a Kubernetes-native REST API filesystem"
RUN groupadd --system --gid 10001 callfs \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/callfs --no-create-home \
       --shell /usr/sbin/nologin callfs \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/callfs /data
COPY --from=builder /opt/callfs /opt/callfs
ENV PATH=/opt/callfs/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CALLFS_LOG_FORMAT=json
WORKDIR /var/lib/callfs
USER 10001:10001
# 8080 HTTP (gateway, link-service), 50051 gRPC (storage-node), 9090 metrics (every role).
EXPOSE 8080 9090 50051
ENTRYPOINT ["callfs"]
CMD ["gateway"]
