# One Weft worker host: `weft-mcp serve` with WEFT_WORKERS uvicorn worker processes.
# BASE_IMAGE: any Python 3.11+ with venv; python:3.11-slim, or the Debian-only one that
# deploy/build-offline-images makes where no registry can be reached (compose passes it from .env).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/weft/bin:$PATH

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
# Dependencies come from PyPI, or only from deploy/wheels when it holds wheels (an offline host:
# `deploy/build-offline-images --wheels`). Behind a TLS-intercepting proxy, pass the CA bundle as the
# build secret `ca_bundle` (docs/deploying.md); it is mounted for this step only, never stored in the image.
RUN --mount=type=secret,id=ca_bundle \
    --mount=type=bind,source=deploy/wheels,target=/tmp/wheels \
    set -e; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    if ls /tmp/wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; fi; \
    python3 -m venv /opt/weft; \
    pip install -q .; \
    rm -rf /app/build /app/*.egg-info; \
    useradd --system --uid 10001 --no-create-home weft

USER weft
WORKDIR /home/weft
ENV WEFT_HOST=0.0.0.0 WEFT_PORT=8000
EXPOSE 8000

# Liveness of the process; nginx and the orchestrator use /readyz for traffic.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"

# SIGTERM: /readyz turns 503 for WEFT_SHUTDOWN_DRAIN_SECONDS, then in-flight calls finish and pools close.
STOPSIGNAL SIGTERM
CMD ["weft-mcp", "serve", "--host", "0.0.0.0", "--port", "8000"]
