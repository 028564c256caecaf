# syntax=docker/dockerfile:1
# GPU Rightsizer operator image: `docker build -t gpu-rightsizer:0.1.0 .`
#
# Stage 1 builds the wheel and installs it with its dependencies into a virtual environment, less the
# local cluster's tooling (rightsizer.devcluster: fake exporter, demo), which the operator never runs.
# Stage 2 is the slim Python runtime with that environment only: no compiler, no pip, no sources,
# running as an unprivileged user (uid 65532, the chart's runAsUser).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/rightsizer \
 && pip --python /opt/rightsizer/bin/python install --no-index --find-links /wheels gpu-rightsizer \
 && /opt/rightsizer/bin/python -c "import pathlib, shutil, rightsizer; \
shutil.rmtree(pathlib.Path(rightsizer.__file__).parent / 'devcluster')" \
 && /opt/rightsizer/bin/rightsizer --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
# The base image's installers are build tools too: the runtime never installs anything.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 65532 rightsizer \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin rightsizer
COPY --from=build /opt/rightsizer /opt/rightsizer
ENV PATH=/opt/rightsizer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so the kubelet can verify runAsNonRoot.
USER 65532:65532
WORKDIR /tmp
# /metrics and /healthz (the chart's metrics.port and health.port).
EXPOSE 8080 8081
ENTRYPOINT ["rightsizer", "run"]
