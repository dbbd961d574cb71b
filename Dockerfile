# One Weft worker host: `weft-mcp serve` with WEFT_WORKERS uvicorn worker processes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install . && useradd --system --uid 10001 --no-create-home weft

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
