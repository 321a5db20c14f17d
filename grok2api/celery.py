"""The Celery application: broker from settings (Redis or kombu's filesystem transport)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

app = Celery("grok2api")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
