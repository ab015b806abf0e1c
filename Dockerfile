# prober: one process (`prober run`), one config, one SQLite file.
#
#   docker build -t prober .
#   docker run -d --name prober -p 127.0.0.1:8080:8080 --stop-timeout 30 \
#       -v "$PWD/config:/config:ro" -v prober-data:/data prober   # config/monitors.toml
#
# docs/DEPLOY.md has the whole recipe (compose, HTTPS, backups); tests/test_dockerfile.py
# lints this file and replays its install steps in a fresh virtualenv.

# Pinned by tag: Python 3.11 on Debian 12. For byte-for-byte repeatable builds pin the
# digest too (python:3.11-slim-bookworm@sha256:...) and bump it on purpose for fixes.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only what the build needs (.dockerignore keeps the rest of the checkout out of the context).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY prober/ prober/
COPY statuspage/ statuspage/
COPY static/ static/
# The project itself, with its extra for PostgreSQL hubs: its dependencies are pinned to
# ranges in pyproject.toml, and DL3013 reads the extra as an unpinned package name.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[postgresql]"

# A fixed non-root uid, so a bind-mounted /data can be chown'ed to it on the host (10001).
RUN groupadd --system --gid 10001 prober \
    && useradd --system --no-log-init --uid 10001 --gid prober \
        --home-dir /data --no-create-home --shell /usr/sbin/nologin prober \
    && mkdir -p /data /config \
    && chown prober:prober /data

# The database, its WAL files, the monthly reports/ and the incident files written by
# `prober incident` live in /data (mount a volume); the config is mounted read-only. PROBER_LISTEN overrides settings.listen: inside the
# container the page must listen on every interface to be reachable through -p.
ENV PROBER_CONFIG=/config/monitors.toml \
    PROBER_DATABASE=sqlite:////data/prober.db \
    PROBER_INCIDENTS_DIR=/data/incidents \
    PROBER_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
WORKDIR /data
# Numeric, so the runtime (and Kubernetes' runAsNonRoot) can tell it is not root
# without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080

# /healthz answers 200 while the scheduler runs and the database takes writes, else 503
# (urlopen raises, python exits 1). slim has no curl: python's urllib does the request,
# on the port PROBER_LISTEN names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('PROBER_LISTEN', '').rpartition(':')[2] or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Exec form: prober is PID 1 and gets SIGTERM itself; it finishes in-flight checks,
# flushes results and exits (give it up to 30 s: `docker stop -t 30`, stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["prober"]
CMD ["run"]
