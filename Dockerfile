# convlab: one image for both SageMaker programs.
#   docker run -v "$PWD/opt_ml:/opt/ml" convlab train    trains from /opt/ml/input, writes /opt/ml/model
#   docker run -p 8080:8080 -v "$PWD/model:/opt/ml/model" convlab serve
# Runtime dependencies only: TensorFlow/Keras to train, tf2onnx to export model.onnx, ONNX Runtime
# to serve it; the SageMaker SDK is not installed (the `sdk` extra is for launching jobs).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SAGEMAKER_BIND_TO_PORT=8080

WORKDIR /opt/program

# Dependencies first, so code changes do not reinstall TensorFlow.
COPY setup.py README.md ./
COPY convlab/__init__.py convlab/__init__.py
COPY training/__init__.py training/__init__.py
COPY inference/__init__.py inference/__init__.py
COPY deploy/__init__.py deploy/__init__.py
RUN pip install --no-cache-dir . "onnxruntime==1.32.0" "tf2onnx==1.17.0" "onnx==1.23.2"

# The package itself, and the two programs SageMaker runs.
COPY convlab/ convlab/
COPY training/ training/
COPY inference/ inference/
COPY deploy/ deploy/
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import inference.server, training.train"
COPY scripts/train scripts/serve /usr/local/bin/

EXPOSE 8080
CMD ["serve"]
