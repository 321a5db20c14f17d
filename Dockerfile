# grok2api: one image for web (manage.py serve), worker and beat (celery). Non-root, data in /data.
FROM python:3.11-slim

# SERVER_HOST=0.0.0.0: reachable from outside the container, so serve needs a client key
# (GROK_APP_API_KEY or an API key row) or ALLOW_OPEN_API=true, else it refuses to start.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    LOG_DIR=/data/logs \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin grok2api \
    && mkdir -p /data \
    && chown -R grok2api /data
USER grok2api

VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SERVER_PORT', '8000'), timeout=4)"

# Migrates, creates the first admin, seeds the runtime config, runs uvicorn; with no REDIS_URL
# it also runs an embedded Celery worker + beat on the filesystem broker under /data.
CMD ["python", "manage.py", "serve"]
