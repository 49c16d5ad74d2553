# trainer on a CUDA runtime: `docker build -t trainer .`
#   docker run --gpus all --ipc=host --user "$(id -u):$(id -g)" -v /data:/data -v "$PWD/runs:/app/runs" \
#       trainer recipes/vit_adamw.toml --set data.path=/data/imagenet
# The PyPI torch wheel bundles its CUDA libraries; the base image supplies the CUDA/cuDNN runtime layout and
# the driver hooks that `--gpus all` needs. scripts/check_image.sh builds and tries it (podman, no GPU).
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

# HF_HOME and the runs folder are writable by any user (--user "$(id -u):$(id -g)" included); mount a host
# folder on /cache/huggingface to keep downloads between containers.
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && mkdir -p /cache/huggingface /app/runs \
    && chmod 1777 /cache /cache/huggingface /app/runs

WORKDIR /app

# Dependencies first (cached while only the source changes), installed as README's set-up command does
# (LICENSE too: pyproject's license-files names it).
COPY pyproject.toml README.md LICENSE ./
COPY trainer/__init__.py trainer/__init__.py
RUN python -m pip install torch==2.14.1 torchvision==0.29.1 -e .

COPY . .

# No user is created: the CUDA ubuntu base already has uid 1000 ("ubuntu"), and any uid works.
USER 1000:1000
# The entry point execs the launcher, which execs one trainer or passes signals on to several: `docker stop`
# (SIGTERM; give it time: `docker stop -t 120`) checkpoints and ends with exit code 75.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["recipes/quickstart.toml"]
