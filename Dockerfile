# trainer on a CUDA runtime: `docker build -t trainer .`
#   docker run --gpus all --ipc=host -v /data:/data -v "$PWD/runs:/app/runs" trainer \
#       recipes/vit_adamw.toml --set data.path=/data/imagenet
# The PyPI torch wheel bundles its CUDA libraries; the base image supplies the CUDA/cuDNN runtime
# layout and the driver hooks that `--gpus all` needs.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 1000 trainer

WORKDIR /app

# Dependencies first (cached while only the source changes), installed as README's set-up command does.
COPY pyproject.toml README.md ./
COPY trainer/__init__.py trainer/__init__.py
RUN python -m pip install torch==2.14.1 torchvision==0.29.1 -e .

COPY --chown=trainer:trainer . .
RUN mkdir -p /app/runs && chown trainer:trainer /app/runs

USER 1000:1000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["recipes/quickstart.toml"]
