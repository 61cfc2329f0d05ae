# One image for the three services; compose.yaml picks the service by its command:
#   docker build -t exchange-core . && docker run exchange-core python -m svc_trades
# Configuration is EX_ environment variables only (common/config.py). A container
# listens on every interface, so auth is on and EX_SECRET_KEY must be given at run time;
# `python -m ops.keys` (also in the image) creates keys.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EX_HOST=0.0.0.0 \
    EX_AUTH=on \
    EX_LOG_FORMAT=json

WORKDIR /src
# The dependencies first, in their own layer, so that a code change does not download
# them again: install the project while its code is not here yet (an empty
# distribution), then remove just the project.
COPY pyproject.toml README.md ./
RUN pip install . \
    && pip uninstall --yes exchange-core \
    && rm -rf build ./*.egg-info

# Then the code, installed as a regular package (with its SQL migrations, see
# pyproject.toml); the services run from site-packages, not from this folder.
COPY common ./common
COPY svc_orders ./svc_orders
COPY svc_trades ./svc_trades
COPY svc_stream ./svc_stream
COPY ops/__init__.py ops/keys.py ./ops/
RUN pip install --no-deps . && rm -rf /src

WORKDIR /app
RUN useradd --system --no-create-home --uid 10001 exchange
USER exchange

EXPOSE 8000 8001 8002
CMD ["python", "-m", "svc_orders"]
