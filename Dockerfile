# syntax=docker/dockerfile:1
# One image for every CineaMate process, chosen by argument:
#   docker run IMAGE serve assignment    (policy, reward, guardrails, decision, analytics, gateway)
#   docker run IMAGE migrate             (apply the database migrations)
#   docker run IMAGE topics              (create the Kafka topics)
# Dependencies are installed at the versions pinned in constraints.txt.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Compilers for the dependencies that have no wheel for the platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/cineamate
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY libs ./libs
COPY services ./services
RUN /opt/cineamate/bin/pip install --constraint constraints.txt . \
    && /opt/cineamate/bin/python -m compileall -q /opt/cineamate

FROM ${PYTHON_IMAGE} AS runtime
# The root filesystem is read-only when deployed: everything written goes to
# /tmp or the spool, both volumes in the manifests.
ENV PATH=/opt/cineamate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    CINEAMATE_HOME=/tmp/cineamate \
    CINEAMATE_BIND_HOST=0.0.0.0 \
    CINEAMATE_ASSIGNMENT_SPOOL_DIR=/var/lib/cineamate/spool
RUN groupadd --system --gid 10001 cineamate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cineamate \
    && mkdir -p /var/lib/cineamate/spool \
    && chown -R 10001:10001 /var/lib/cineamate
COPY --from=build /opt/cineamate /opt/cineamate
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 8002 8003 8004 8005 8006
ENTRYPOINT ["cineamate"]
CMD ["--help"]
