"""Admin for client API keys and the usage ledger.

An ApiKey's secret is generated here (never typed in), shown once in the success message after
creation, and stored only as its SHA-256 (gateway/auth.py compares digests). Saving or deleting
a key bumps the "api_keys" stamp (signals in gateway/auth.py), so every process accepts or
refuses it within a poll interval. Usage records are read-only.
"""
from __future__ import annotations

import secrets
from datetime import timezone as dt_timezone

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html

from gateway.models import ApiKey, UsageHourly, UsageRecord
from grokweb.registry import BY_ID
from core.crypto import hash_api_key

KEY_PREFIX = "sk-g2a-"


def api_key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyForm(forms.ModelForm):
    allowed_models = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "one model id per line; empty = every model"}),
        help_text="Model ids this key may use (one per line or comma-separated). Empty = every model.",
    )

    class Meta:
        model = ApiKey
        fields = ["label", "enabled", "allowed_models", "expires_at", "requests_per_minute", "tokens_per_minute",
                  "max_concurrent_requests", "daily_token_budget", "monthly_token_budget"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_models"] = "\n".join(self.instance.allowed_models or [])

    def clean_allowed_models(self) -> list[str]:
        text = self.cleaned_data.get("allowed_models") or ""
        models = [m.strip() for m in text.replace(",", "\n").splitlines() if m.strip()]
        unknown = [m for m in models if m not in BY_ID]
        if unknown:
            raise forms.ValidationError(f"Unknown model id(s): {', '.join(unknown)}. See GET /v1/models for the ids.")
        return list(dict.fromkeys(models))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("label", "prefix", "enabled", "models", "requests_per_minute", "tokens_per_minute",
                    "max_concurrent_requests", "expires_at", "created_at", "last_used_at")
    list_filter = ("enabled",)
    search_fields = ("label", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ("enable", "disable")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:  # the key's own charts (templates/admin/gateway/apikey/change_form.html)
            from gateway.charts import key_charts

            context["g2a_charts"] = key_charts(key=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="allowed models")
    def models(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models) if obj.allowed_models else "all"

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            key = api_key_generate()
            obj.key_hash = hash_api_key(key)
            obj.prefix = key[: len(KEY_PREFIX) + 4]
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"New API key for “{obj.label}”: {key} — copy it now, it is not stored and will not be shown again.",
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable selected keys")
    def enable(self, request, queryset) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected keys")
    def disable(self, request, queryset) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        # save() per row so the post_save signal bumps the stamp (a queryset update would not).
        with transaction.atomic():
            rows = list(queryset.exclude(enabled=enabled))
            for row in rows:
                row.enabled = enabled
                row.save(update_fields=["enabled"])
        self.message_user(request, f"{len(rows)} key(s) {'enabled' if enabled else 'disabled'}.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the gateway itself: shown, never added, edited or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    # Thirteen plain columns were 1,280 px wide; paired and shortened they fit a 1400 px window.
    list_display = ("when", "api_key_label", "route", "model", "mode", "account", "stream", "result", "tokens", "timing")
    list_filter = ("status", "endpoint", "stream", "model")
    search_fields = ("api_key_label", "model", "error_code")
    date_hierarchy = "created_at"
    list_select_related = ("account",)

    class Media:  # fits a 1400 px window (grok2api/tests/test_admin_browser.py)
        css = {"all": ("grok2api/admin-lists.css",)}

    @admin.display(description="time (UTC)", ordering="created_at")
    def when(self, obj: UsageRecord) -> str:
        return obj.created_at.astimezone(dt_timezone.utc).strftime("%m-%d %H:%M:%S")

    @admin.display(description="endpoint", ordering="endpoint")
    def route(self, obj: UsageRecord) -> str:
        return obj.endpoint.removeprefix("/v1/")

    @admin.display(description="status", ordering="status")
    def result(self, obj: UsageRecord) -> str:
        if not obj.error_code:
            return obj.get_status_display()
        return format_html("{}<br><small>{}</small>", obj.get_status_display(), obj.error_code)

    @admin.display(description="tokens in → out")
    def tokens(self, obj: UsageRecord) -> str:
        return f"{obj.prompt_tokens} → {obj.completion_tokens}"

    @admin.display(description="ms (first token)", ordering="duration_ms")
    def timing(self, obj: UsageRecord) -> str:
        return f"{obj.duration_ms} ({obj.ttft_ms})" if obj.ttft_ms is not None else str(obj.duration_ms)


@admin.register(UsageHourly)
class UsageHourlyAdmin(ReadOnlyAdmin):
    """Read-only: the rows are recomputed from the ledger by beat (gateway/ledger.py)."""

    list_display = ("hour", "api_key_label", "model", "account", "requests", "errors", "prompt_tokens", "completion_tokens")
    list_filter = ("model",)
    search_fields = ("api_key_label", "model")
    date_hierarchy = "hour"
    list_select_related = ("account",)
