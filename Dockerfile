# Standalone image of the component (outside DeltaTwin, which generates its own
# image from manifest.json). Installs as scripts/setup.sh does: `pip install .`, the CPU
# image (ONNX Runtime, no torch: 0.9 GB of packages); `docker build --build-arg EXTRAS=gpu .`
# adds the `gpu` extra (PyTorch and its CUDA libraries, 5.5 GB more) for hosts run with
# `docker run --gpus all`, where `--device auto` then uses the GPU.
FROM python:3.11-slim
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COMPONENT_MODELS_DIR=/app/models

RUN useradd --create-home --uid 1000 component
WORKDIR /app

# The package and its dependencies (EXTRAS: empty, gpu, or e.g. gpu,train).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --upgrade pip && pip install ".${EXTRAS:+[$EXTRAS]}"

# Model card and weights live inside the image.
COPY models ./models

USER component
WORKDIR /home/component
# No ENTRYPOINT: CWL runners (app-package.cwl) and DeltaTwin give the whole command line.
# `docker run IMAGE` alone corrects the embedded sample into /home/component/output.
CMD ["python", "-m", "component", "run", "--output", "output"]
