# convlab: the SageMaker bring-your-own-container image, in two flavours.
#   full (default):  docker build -t convlab:latest .
#       `train` and `serve`: TensorFlow/Keras to train, tf2onnx to export model.onnx, ONNX Runtime to serve.
#   serve-only:      docker build --target serve -t convlab-serve:latest .
#       `serve` only: ONNX Runtime, no TensorFlow; serves a model.tar.gz that has model.onnx.
#   docker run -v "$PWD/opt_ml:/opt/ml" convlab train                      trains from /opt/ml/input
#   docker run --network host -e SAGEMAKER_BIND_TO_PORT=8080 -v "$PWD/model:/opt/ml/model" convlab serve
# Where Docker Hub cannot be reached, build the base from Debian packages first
# (scripts/docker_base.sh) and pass --build-arg BASE_IMAGE=convlab-base:bookworm;
# scripts/docker_build.sh does that by itself. The SageMaker SDK is not installed (the `sdk` extra
# is for launching jobs).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
# Every stage and every image built from this file carries the label, so the untagged images earlier
# builds leave behind can be removed alone: docker image prune -f --filter label=org.convlab.image
LABEL org.convlab.image=convlab
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SAGEMAKER_BIND_TO_PORT=8080 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /opt/program
COPY constraints.txt ./

# Serve-only: the inference package alone, on ONNX Runtime.
FROM base AS serve
RUN pip install --no-cache-dir -c constraints.txt numpy pillow starlette uvicorn httptools uvloop onnxruntime \
    || { echo "pip could not install the packages: the build needs a package index (docker build --network host uses the host's); offline, see scripts/docker_base.sh" >&2; exit 1; }
COPY inference/ inference/
ENV PYTHONPATH=/opt/program
RUN python3 -c "import inference.server, inference.app" \
    && ! python3 -c "import tensorflow" 2>/dev/null
COPY scripts/serve /usr/local/bin/
EXPOSE 8080
CMD ["serve"]

# Full: both programs. Dependencies first, from only what pip reads to resolve them (setup.py, the
# constraints, the package markers), so a code or README change keeps TensorFlow's layer cached.
FROM base AS full
COPY setup.py ./
COPY convlab/__init__.py convlab/__init__.py
COPY training/__init__.py training/__init__.py
COPY inference/__init__.py inference/__init__.py
COPY deploy/__init__.py deploy/__init__.py
RUN pip install --no-cache-dir -c constraints.txt ".[onnx]" \
    || { echo "pip could not install the packages: the build needs a package index (docker build --network host uses the host's); offline, see scripts/docker_base.sh" >&2; exit 1; }
COPY README.md ./
COPY convlab/ convlab/
COPY training/ training/
COPY inference/ inference/
COPY deploy/ deploy/
RUN pip install --no-cache-dir --no-deps . \
    && python3 -c "import inference.server, training.train"
COPY scripts/train scripts/serve /usr/local/bin/
EXPOSE 8080
CMD ["serve"]
