"""Admin for video jobs and the local media cache.

VideoJob: list with status filter, progress and error; a "retry" action re-queues failed or stuck
jobs through media.videos.video_job_retry (the same path the API uses). CachedMedia: the
change list shows count, size and cap per type and offers "Clear image cache" / "Clear video
cache" buttons plus a delete action that also removes the files. Nothing here writes files or
rows except through media.cache / media.videos.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from media import cache
from media.models import CachedMedia, VideoJob
from media.videos import video_job_retry


@admin.register(VideoJob)
class VideoJobAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "progress_bar", "model", "seconds", "size", "attempts", "error_short", "created_at", "completed_at")
    list_filter = ("status", "model", "seconds")
    search_fields = ("id", "prompt", "error_message")
    readonly_fields = [f.name for f in VideoJob._meta.fields]
    actions = ["retry_jobs"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress_bar(self, obj: VideoJob) -> str:
        return format_html('<progress max="100" value="{}"></progress> {}%', obj.progress, obj.progress)

    @admin.display(description="error")
    def error_short(self, obj: VideoJob) -> str:
        if not obj.error_code:
            return ""
        return f"{obj.error_code}: {obj.error_message[:120]}"

    @admin.action(description="Retry the selected jobs (failed or stuck ones start again)")
    def retry_jobs(self, request, queryset) -> None:
        done = sum(1 for job_id in queryset.values_list("id", flat=True) if video_job_retry(job_id=job_id))
        skipped = queryset.count() - done
        self.message_user(request, f"{done} job(s) queued again" + (f", {skipped} completed job(s) left alone." if skipped else "."), messages.SUCCESS)


@admin.register(CachedMedia)
class CachedMediaAdmin(admin.ModelAdmin):
    change_list_template = "admin/media/cachedmedia/change_list.html"
    list_display = ("media_type", "media_id", "link", "content_type", "size_kb", "created_at")
    list_filter = ("media_type", "content_type")
    search_fields = ("media_id", "source_url")
    readonly_fields = [f.name for f in CachedMedia._meta.fields]
    actions = ["delete_with_files"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would leave the files behind
        return actions

    @admin.display(description="size (KB)")
    def size_kb(self, obj: CachedMedia) -> str:
        return f"{obj.size_bytes / 1024:.1f}"

    @admin.display(description="file")
    def link(self, obj: CachedMedia) -> str:
        return format_html('<a href="{}" target="_blank">open</a>', cache.media_local_url(media_type=obj.media_type, media_id=obj.media_id))

    @admin.action(description="Delete the selected files from the cache")
    def delete_with_files(self, request, queryset) -> None:
        n = sum(1 for row in queryset if cache.media_cache_delete(media_type=row.media_type, media_id=row.media_id))
        self.message_user(request, f"{n} cached file(s) deleted.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("clear/<str:media_type>/", self.admin_site.admin_view(self.clear_view), name="media_cachedmedia_clear"),
        ] + super().get_urls()

    def clear_view(self, request, media_type: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_delete_permission(request):
            messages.error(request, "You may not delete cached media.")
        elif media_type not in ("image", "video", "all"):
            messages.error(request, f"Unknown media type {media_type!r}.")
        else:
            n = cache.media_cache_clear(media_type=None if media_type == "all" else media_type)
            messages.success(request, f"Cleared {n} cached {'file' if n == 1 else 'files'} ({media_type}).")
        return HttpResponseRedirect(reverse("admin:media_cachedmedia_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        extra_context["cache_stats"] = cache.media_cache_stats()
        extra_context["has_delete_permission"] = self.has_delete_permission(request)
        from core.config import config

        extra_context["app_url_missing"] = not (config().get("app.app_url") or "")
        return super().changelist_view(request, extra_context=extra_context)
