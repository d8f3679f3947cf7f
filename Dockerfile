# Images of TensorOne Training: three targets from one file.
#
#   docker build --target operator -t ghcr.io/tensorone/training-operator:0.1.0 .
#   docker build --target gateway  -t ghcr.io/tensorone/training-gateway:0.1.0 .
#   docker build --target trainer  -t ghcr.io/tensorone/trainer:0.1.0 .
#
# Every Python package comes from the committed locks (requirements/*.txt, `make lock`), each at one
# version and checked against its hashes; nothing is resolved at build time.
# operator: requirements/operator.txt: kopf and the Kubernetes client, no torch (about 150 MB).
# gateway:  requirements/gateway.txt: FastAPI, uvicorn and the Kubernetes client, no torch.
# trainer:  requirements/trainer.txt: PyPI's torch 2.13.0, the CUDA 13.0 build, with its nvidia-*
#           libraries, then transformers, peft, datasets, and the experiment trackers' clients
#           (mlflow-skinny, tensorboardX, wandb: about 110 MB). The driver comes from the node
#           (NVIDIA container toolkit), so the base is the same slim Python image.
#
# Both final images run as a numeric non-root user and hold no compiler or build tool: the wheel is
# built in its own stage and only the finished virtualenv is copied into the final stages.

# Pinned by exact tag and by the digest of its multi-architecture index. To move to a newer patch:
#   docker buildx imagetools inspect python:3.11.X-slim-bookworm   (and replace both tag and digest)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The project as a wheel (pure Python), built with the locked setuptools: it never reaches a final image.
FROM python-base AS wheel
WORKDIR /src
COPY requirements/build.txt ./requirements/
RUN python -m pip install --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY tensorone ./tensorone
COPY trainer ./trainer
COPY operator ./operator
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python-base AS operator-venv
COPY requirements/operator.txt /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip

FROM python-base AS gateway-venv
COPY requirements/gateway.txt /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip

FROM python-base AS trainer-venv
COPY requirements/trainer.txt /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import torch, transformers, peft; assert torch.version.cuda, torch.__version__" \
 && /opt/venv/bin/pip uninstall --yes pip

# The operator: `python -m tensorone_operator`; the chart passes --all-namespaces or --namespace.
FROM python-base AS operator
COPY --from=operator-venv /opt/venv /opt/venv
# The chart mounts a read-only root filesystem and an emptyDir at /tmp.
ENV HOME=/tmp
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "tensorone_operator"]

# The gateway: `python -m tensorone.gateway`; the chart passes the namespace, CA and config file.
FROM python-base AS gateway
COPY --from=gateway-venv /opt/venv /opt/venv
ENV HOME=/tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "tensorone.gateway"]

# The trainer: the operator's PyTorchJob runs `torchrun ... -m trainer` as user 1000.
FROM python-base AS trainer
RUN groupadd --gid 1000 trainer \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/trainer --shell /usr/sbin/nologin trainer
COPY --from=trainer-venv /opt/venv /opt/venv
ENV HOME=/home/trainer \
    HF_HOME=/home/trainer/.cache/huggingface
WORKDIR /home/trainer
USER 1000:1000
EXPOSE 9400
CMD ["python", "-m", "trainer", "--help"]
