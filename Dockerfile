# Standalone image of the component (outside DeltaTwin, which generates its own
# image from manifest.json). Mirrors the README set-up: `pip install .`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COMPONENT_MODELS_DIR=/app/models

RUN useradd --create-home --uid 1000 component
WORKDIR /app

# Dependencies first, so that code changes do not reinstall torch.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --upgrade pip && pip install .

# Model card and weights live inside the image.
COPY models ./models

USER component
WORKDIR /home/component
# No ENTRYPOINT: CWL runners (app-package.cwl) and DeltaTwin give the whole command line.
# `docker run IMAGE` alone corrects the embedded sample into /home/component/output.
CMD ["python", "-m", "component", "run", "--output", "output"]
