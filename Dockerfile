# The service as a container image: `docker compose up` (compose.yaml) runs it beside
# mosquitto. Built from this checkout; the store lives on the /data volume.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY service ./service
# DL3013 wants pinned versions: this installs the checkout itself, and constraints.txt pins
# every dependency to what the tests ran with.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --constraint constraints.txt ".[postgres]" \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin coach \
    && mkdir -p /data /config \
    && chown coach /data

COPY config/docker/config.yaml /config/config.yaml

USER 10001
WORKDIR /data
VOLUME ["/data"]

# `status` asks the running service over its broker and exits 1 when it is not well
# (no answer, store or scheduler errors).
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
    CMD ["recovery-coach", "status", "--config", "/config/config.yaml", "--timeout", "5"]

ENTRYPOINT ["recovery-coach"]
CMD ["run", "--config", "/config/config.yaml"]
