# Worker image for Dataflow TPU jobs (e.g. v5e: --worker_machine_type=ct5lp-hightpu-1t,
# worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1; jaxgen/configs/runners/dataflow_tpu.yaml).
#   docker build -f configs/containers/tpu.Dockerfile -t REGION-docker.pkg.dev/PROJECT/jaxgen/tpu .
ARG PY=3.11
ARG BEAM=2.78.0
FROM apache/beam_python${PY}_sdk:${BEAM} AS beam

FROM python:${PY}-slim
COPY --from=beam /opt/apache/beam /opt/apache/beam
WORKDIR /opt/jaxgen
COPY pyproject.toml README.md ./
COPY jaxgen ./jaxgen
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --no-cache-dir . "jax[tpu]" "apache-beam[gcp]==${BEAM}"
# A second process on a TPU host silently falls back to CPU: jobs pass --expect-backend tpu.
ENV JAXGEN_CACHE_DIR=/tmp/jaxgen-xla
ENTRYPOINT ["/opt/apache/beam/boot"]
