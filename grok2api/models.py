"""Process heartbeats: when a Celery worker and Celery beat were last seen (grok2api/heartbeat.py).

A database row, not the cache: without Redis the cache is per process (locmem), and the web
processes that report on /readyz and the admin index must see what the worker and beat wrote.
"""
from django.db import models


class Heartbeat(models.Model):
    name = models.CharField(max_length=20, primary_key=True)  # "worker" or "beat"
    seen_at = models.DateTimeField()
    host = models.CharField(max_length=200, blank=True, default="")  # Celery node name / host of the last stamp

    class Meta:
        verbose_name = "process heartbeat"

    def __str__(self) -> str:
        return f"{self.name} seen {self.seen_at.isoformat()} ({self.host})"
