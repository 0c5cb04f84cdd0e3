# syntax=docker/dockerfile:1
# beamscore worker image for Dataflow and Flink custom containers.
#
# Built on Apache Beam's Python 3.11 SDK image of the Beam version beamscore pins, so the
# image's boot program (the ENTRYPOINT, kept as is) speaks the same Fn API as the launcher.
# tests/test_dockerfile.py checks that the tag, the pins below and pyproject.toml agree.
#
#   docker build --target cpu -t REGISTRY/beamscore/worker:0.1.0 .       # CPU workers (default)
#   docker build --target gpu -t REGISTRY/beamscore/worker-gpu:0.1.0 .   # CUDA: tensorflow[and-cuda]
#
# Each image holds exactly one TensorFlow distribution: the cpu stage installs beamscore[cpu]
# (tensorflow-cpu), the gpu stage beamscore[gpu] (tensorflow[and-cuda]), and base none; both
# end with `beamscore doctor`, which fails the build if two distributions share `tensorflow/`.
# Check a GPU image on a GPU machine: docker run --rm --gpus all --entrypoint beamscore IMAGE doctor --require-gpu
#
# Dataflow: --sdk_container_image=IMAGE --sdk_location=container
# Flink:    run IMAGE with the argument --worker_pool as a sidecar of each TaskManager and pass
#           --environment_type=EXTERNAL --environment_config=localhost:50000

ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
ARG TF_VERSION=2.21.0

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS base
ARG BEAM_VERSION
ARG TF_VERSION
# Exact versions of what a result depends on (the manifest records them), the ones the
# test suite runs with on the launcher's side.
ARG PYARROW_VERSION=25.0.1
ARG FSSPEC_VERSION=2026.9.0
ARG GCSFS_VERSION=2026.10.1
ARG NUMPY_VERSION=2.4.6
ARG PYYAML_VERSION=6.0.4

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    BEAMSCORE_CACHE=/var/cache/beamscore/models
RUN printf '%s\n' \
      "apache-beam==${BEAM_VERSION}" \
      "tensorflow-cpu==${TF_VERSION}" \
      "tensorflow==${TF_VERSION}" \
      "pyarrow==${PYARROW_VERSION}" \
      "fsspec==${FSSPEC_VERSION}" \
      "gcsfs==${GCSFS_VERSION}" \
      "numpy==${NUMPY_VERSION}" \
      "pyyaml==${PYYAML_VERSION}" \
      > /opt/beamscore-constraints.txt \
 && mkdir -p /var/cache/beamscore/models && chmod 1777 /var/cache/beamscore/models

WORKDIR /opt/beamscore/src
COPY pyproject.toml README.md ./
COPY beamscore ./beamscore
# Beam stays at the image's version (the constraint), everything else at the pins above.
# No TensorFlow yet: each target below adds exactly one with its extra.
RUN pip install --constraint /opt/beamscore-constraints.txt ".[gcp,s3]" \
 && python -c "import apache_beam, beamscore; assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__"
WORKDIR /

# CUDA workers: tensorflow with its CUDA wheels (beamscore[gpu]). Dataflow installs the
# NVIDIA driver on the VM (worker_accelerator=...;install-nvidia-driver) and mounts it under
# /usr/local/nvidia. Several SDK processes may share one GPU: each takes GPU memory as it
# needs it instead of all of it at start.
FROM base AS gpu
ARG TF_VERSION
RUN pip install --constraint /opt/beamscore-constraints.txt "/opt/beamscore/src[gpu,gcp,s3]" \
 && python -c "import tensorflow as tf; assert tf.__version__ == '${TF_VERSION}', tf.__version__" \
 && beamscore doctor
ENV TF_FORCE_GPU_ALLOW_GROWTH=true \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib

# CPU workers, the default target (last stage): tensorflow-cpu (beamscore[cpu]).
FROM base AS cpu
ARG TF_VERSION
RUN pip install --constraint /opt/beamscore-constraints.txt "/opt/beamscore/src[cpu,gcp,s3]" \
 && python -c "import tensorflow as tf; assert tf.__version__ == '${TF_VERSION}', tf.__version__" \
 && beamscore doctor
