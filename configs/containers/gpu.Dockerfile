# Worker image for Dataflow GPU jobs (and Flink/Spark with the DOCKER environment).
#   docker build -f configs/containers/gpu.Dockerfile -t REGION-docker.pkg.dev/PROJECT/jaxgen/gpu .
#   docker push ...; then --sdk_container_image=<that image> (jaxgen/configs/runners/dataflow_gpu.yaml)
# Beam's boot binary comes from the Beam SDK image of the SAME Beam and Python versions as
# the launcher; CUDA comes with the jax[cuda13] wheels, the driver from the VM
# (worker_accelerator=...;install-nvidia-driver).
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
RUN pip install --no-cache-dir . "jax[cuda13]" "apache-beam[gcp]==${BEAM}"
# One SDK process owns the GPU (--experiments=no_use_multiple_sdk_containers); JAX must not
# grab 75% of the memory up front in case the runner starts a second one anyway.
ENV XLA_PYTHON_CLIENT_PREALLOCATE=false \
    JAXGEN_CACHE_DIR=/tmp/jaxgen-xla
ENTRYPOINT ["/opt/apache/beam/boot"]
