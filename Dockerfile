# One image for every process: web (the default command), worker, beat and release (migrate +
# sync_schedules) differ only by command (compose.yaml, render.yaml, railway.json, docs/deploying.md).
# Its build steps are scripts CI runs too: deploy/install.sh (also `make venv`) and
# deploy/collectstatic.sh (tests/test_deployment_image.py); CI lints this file with hadolint.
ARG PYTHON_IMAGE=python:3.13-slim-trixie

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt ./
COPY deploy/install.sh deploy/
# Runtime requirements only (xgboost-cpu: the CPU-only wheel, no CUDA libraries).
RUN deploy/install.sh /opt/venv requirements.txt
COPY . .
RUN deploy/collectstatic.sh /opt/venv/bin/python

FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# pg_dump/pg_restore for `backup_db`/`restore_db` (Debian trixie: PostgreSQL 17 client tools; they
# must be at least the server's major version). Nothing else: psycopg's wheel carries libpq.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home churnshield \
    && install -d -o churnshield -g 0 /var/lib/churnshield/backups
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=churnshield.settings.production \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    BACKUP_DIR=/var/lib/churnshield/backups
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=6s --start-period=60s --retries=3 CMD ["python", "deploy/healthcheck.py"]
# Platforms (Render, Railway, App Runner) pass the port to listen on in PORT.
CMD ["sh", "-c", "exec uvicorn churnshield.asgi:application --host 0.0.0.0 --port \"$PORT\" --proxy-headers"]
