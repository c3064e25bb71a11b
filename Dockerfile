# The modelpilot operator image: `docker build -t modelpilot:0.1.0 .`
# Stage 1 builds the wheel and installs it into a virtualenv; stage 2 is that virtualenv
# on a clean Python, running as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && python -m venv /opt/modelpilot \
 && /opt/modelpilot/bin/pip install --no-cache-dir /dist/modelpilot-*.whl

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/modelpilot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/modelpilot /opt/modelpilot
# A numeric UID, so Kubernetes can verify runAsNonRoot. The root filesystem may be
# read-only: the chart mounts an emptyDir at /tmp, the only place written.
USER 65532:65532
# 8080: /healthz (liveness); 8081: /metrics (Prometheus).
EXPOSE 8080 8081
ENTRYPOINT ["modelpilot", "run"]
