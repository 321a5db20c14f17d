"""Admin for client API keys and the usage ledger.

An ApiKey's secret is generated here (never typed in), shown once in the success message after
creation, and stored only as its SHA-256 (gateway/auth.py compares digests). Saving or deleting
a key bumps the "api_keys" stamp (signals in gateway/auth.py), so every process accepts or
refuses it within a poll interval. Usage records are read-only.
"""
from __future__ import annotations

import secrets

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from gateway.models import ApiKey, UsageRecord
from gateway.registry import BY_ID
from grok2api.crypto import hash_api_key

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


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "api_key_label", "endpoint", "model", "mode", "account", "stream", "status",
                    "error_code", "prompt_tokens", "completion_tokens", "duration_ms", "ttft_ms")
    list_filter = ("status", "endpoint", "stream", "model")
    search_fields = ("api_key_label", "model", "error_code")
    date_hierarchy = "created_at"
    list_select_related = ("account",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
