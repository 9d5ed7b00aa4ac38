# syntax=docker/dockerfile:1
# Syncline, one node per container: `syncline up` (HTTP API and UI on 8000, WebSocket gateway on
# 8001) against the PostgreSQL in DATABASE_URL. No secret is baked in: DATABASE_URL,
# SYNCLINE_JWT_SECRET and SYNCLINE_API_KEY come from the environment at run time.
# compose.yaml runs a cluster of these; docs/deploy.md walks through it.

ARG PYTHON_VERSION=3.11

# -- build: Syncline and its dependencies into a virtualenv ----------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies first, in a layer of their own that a change of src/ does not invalidate.
# All but one install from wheels (manylinux); python-fossil-delta (fossil's delta.c through
# cffi) has only a source release and compiles here: gcc in this stage only, the runtime
# stage gets the built extension with the virtualenv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps .

# -- runtime: the virtualenv, a non-root user, nothing else ------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --system --gid 10001 syncline \
    && useradd --system --uid 10001 --gid syncline --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin syncline \
    && mkdir /app && chown syncline:syncline /app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNCLINE_HOST=0.0.0.0
# ./syncline.toml (sync rules, namespaces) is read from here when one is mounted.
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001
# /readyz: 200 when the node can serve clients (database, migrations, gateway, and capture
# leading or standing by while another node leads). slim images have no curl.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SYNCLINE_PORT', '8000') + '/readyz', timeout=2)"]
# `docker run IMAGE` serves; `docker run IMAGE migrate|doctor|config` runs another command.
ENTRYPOINT ["syncline"]
CMD ["up"]
