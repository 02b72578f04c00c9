# Tweezer: one image for web, worker and beat (the command picks the role).
# It holds the runtime lock only (requirements/runtime.txt): no test, lint or bench tool, no
# emulators (EMU_SV / EMU_MPS need torch: requirements/emulators.txt), no S3 (requirements/s3.txt).

# Stage 1: the runtime set in a venv. Only this lock is copied, so a code change reuses the layer.
FROM python:3.11-slim AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements/runtime.txt /tmp/runtime.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/runtime.txt

# Stage 2: the venv, the code and the collected static files; no pip cache, runs as `tweezer` (10001).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv \
    DJANGO_SETTINGS_MODULE=portal.settings TWEEZER_VAR_DIR=/data
# A numeric id (10001), so Kubernetes' runAsNonRoot can verify it and host volumes can be chowned to it.
RUN groupadd --system --gid 10001 tweezer \
 && useradd --system --uid 10001 --gid tweezer --no-create-home --home-dir /app --shell /usr/sbin/nologin tweezer
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY . .
RUN mkdir -p /data && DEBUG=0 python manage.py collectstatic --noinput -v0 && chown -R tweezer /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# Ready = the database and broker answer (`/readyz`, issue 20). Slim images have no curl: urllib
# exits non-zero on a refused connection or an HTTP error. The web role only: compose.yaml turns
# it off for beat and the workers, which serve no HTTP. X-Forwarded-Proto (trusted from loopback)
# spares it HTTPS=1's redirect; its Host is 127.0.0.1, so keep that in ALLOWED_HOSTS (the default).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/readyz', headers={'X-Forwarded-Proto': 'https'}), timeout=4)"]

# web: gunicorn (ASGI); worker: `celery -A portal worker -Q default,device.EMU_FREE`; beat: `celery -A portal beat`.
# ASGI (uvicorn's gunicorn worker): held status requests and the portal's event streams wait on
# the event loop, not in a thread (issue 19).
CMD ["gunicorn", "portal.asgi:application", "-k", "uvicorn.workers.UvicornWorker", "-b", "0.0.0.0:8000", "-w", "3", "--access-logfile", "-"]
