from grok2api.celery import app as celery_app

__all__ = ("celery_app",)
