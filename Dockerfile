# Tweezer: one image for web, worker and beat (the command picks the role).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portal.settings TWEEZER_VAR_DIR=/data
WORKDIR /app

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps pulser-pasqal==0.24.0

COPY . .
RUN mkdir -p /data && DEBUG=0 python manage.py collectstatic --noinput -v0 \
 && useradd --system --home /app tweezer && chown -R tweezer /data
USER tweezer
VOLUME ["/data"]
EXPOSE 8000

# web: gunicorn; worker: `celery -A portal worker -Q default,device.EMU_FREE`; beat: `celery -A portal beat`.
CMD ["gunicorn", "portal.wsgi", "-b", "0.0.0.0:8000", "-w", "3", "--threads", "4", "--access-logfile", "-"]
