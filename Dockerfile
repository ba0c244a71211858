# The gateway image: one image for web (uvicorn), worker and beat.
FROM python:3.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# bubblewrap sandboxes stdio MCP servers; curl serves the health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 gateway
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir . || true
COPY . .
RUN pip install --no-cache-dir . \
    && DEBUG=true python manage.py collectstatic --noinput -v0 \
    && chown -R gateway /app
USER gateway
ENV DEBUG=false VAR_DIR=/app/var
EXPOSE 8000
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
