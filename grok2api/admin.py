"""Admin → Periodic tasks: rows the runtime config manages are marked and read-only.

The runtime config wins over an admin edit of a managed row (grok2api/schedule.py puts such
edits back), so the admin says which config key to change instead of offering a form whose
changes would be undone. Other rows (the media tasks, an operator's own) stay editable.

The core's own models (runtime config, proxies, operator alerts) are registered in core/admin.py.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from grok2api.schedule import schedule_managed_names


def managed_note(name: str) -> str | None:
    """Why a row is read-only, or None when it is not managed."""
    names = schedule_managed_names()
    if name not in names:
        return None
    key = names[name]
    if key:
        return f"managed by runtime config key {key} (edit it under Runtime config; edits here are put back)"
    return "managed by grok2api (fixed interval; edits here are put back)"


class ManagedPeriodicTaskAdmin(PeriodicTaskAdmin):
    list_display = (*PeriodicTaskAdmin.list_display, "managed_by")

    @admin.display(description="managed by")
    def managed_by(self, obj: PeriodicTask) -> str:
        note = managed_note(obj.name)
        return note.split(" (", 1)[0].removeprefix("managed by ") if note else "—"

    def has_change_permission(self, request, obj=None):
        if obj is not None and managed_note(obj.name):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and managed_note(obj.name):
            return False
        return super().has_delete_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        note = managed_note(obj.name) if obj is not None else None
        if note and request.method == "GET":
            self.message_user(request, f"{obj.name!r} is {note}.", messages.WARNING)
        return super().change_view(request, object_id, form_url, extra_context)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, ManagedPeriodicTaskAdmin)
