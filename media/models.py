"""Video jobs and the local media cache index."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class VideoJobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    IN_PROGRESS = "in_progress", "in progress"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


class VideoJob(models.Model):
    """An asynchronous video generation (POST /v1/videos), run by a Celery task."""

    id = models.CharField(primary_key=True, max_length=40)  # "video_<32 hex>"
    api_key = models.ForeignKey("gateway.ApiKey", null=True, blank=True, on_delete=models.SET_NULL)
    model = models.CharField(max_length=80)
    prompt = models.TextField()
    seconds = models.PositiveSmallIntegerField(default=6)
    size = models.CharField(max_length=16, default="1792x1024")
    resolution_name = models.CharField(max_length=8, default="720p")
    preset = models.CharField(max_length=10, default="normal")
    reference_paths = models.JSONField(default=list, blank=True, help_text="reference images saved under DATA_DIR")
    status = models.CharField(max_length=12, choices=VideoJobStatus.choices, default=VideoJobStatus.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=60, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    account = models.ForeignKey("accounts.Account", null=True, blank=True, on_delete=models.SET_NULL)
    upstream_state = models.JSONField(default=dict, blank=True, help_text="post ids and finished segments, for resuming")
    attempts = models.PositiveSmallIntegerField(default=0)
    worker_id = models.CharField(max_length=100, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=200, blank=True, default="")
    file_size = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.id


class MediaType(models.TextChoices):
    IMAGE = "image", "image"
    VIDEO = "video", "video"


class CachedMedia(models.Model):
    """A file in DATA_DIR/files/<type>s/, served by /v1/files/<type>?id=…"""

    media_type = models.CharField(max_length=5, choices=MediaType.choices)
    media_id = models.CharField(max_length=64)
    file_name = models.CharField(max_length=100)
    content_type = models.CharField(max_length=50)
    size_bytes = models.PositiveBigIntegerField(default=0)
    source_url = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name_plural = "cached media"
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["media_type", "media_id"], name="unique_media")]

    def __str__(self) -> str:
        return f"{self.media_type}:{self.media_id}"
