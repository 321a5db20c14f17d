"""Admin for runtime config, proxies and operator alerts (issue 2).

Runtime config is one form with a field per key of config.defaults.toml, grouped by section.
The whole submission is validated with `config_validate` (field errors on bad values) and saved
with `config_save` in one transaction, so nothing is half-saved; every process picks the change
up from the "config" version stamp within a poll interval. Each field says where its effective
value comes from (default / database / environment). Keys set by a GROK_* variable are shown
read-only (the environment wins). Secrets are never rendered: their field is blank, a blank
submission keeps the saved value, and a "clear" box empties it.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from core.config import (
    CHOICES,
    SECRET_KEYS,
    config,
    config_saved,
    config_save,
    config_seed,
    config_validate,
    config_warnings,
    defaults,
    env_name,
    env_overrides,
    mask_url,
    mask_value,
)
from core.models import OperatorAlert, Proxy, RuntimeConfig
from core.snapshots import stamp_bump

CLEAR_SUFFIX = "__clear"


def field_name(key: str) -> str:
    return key.replace(".", "__")


def _section(key: str) -> str:
    return key.rsplit(".", 1)[0]


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    return repr(value) if value == "" else str(value)


class RuntimeConfigFormBase(forms.ModelForm):
    """Declared fields are added per key by `runtime_config_form()`."""

    class Meta:
        model = RuntimeConfig
        fields: list[str] = []

    def clean(self):
        cleaned = super().clean()
        saved = config_saved()
        env = env_overrides()
        values: dict[str, Any] = {}
        for key in defaults():
            name = field_name(key)
            if key in env or name not in self.fields:
                continue  # the environment wins; the saved value stays as it is
            if key in SECRET_KEYS:
                if cleaned.get(name + CLEAR_SUFFIX):
                    values[key] = [] if isinstance(defaults()[key], list) else ""
                    continue
                if cleaned.get(name) in ("", None):
                    continue  # blank = keep the saved secret
            if name in self.errors:
                continue  # the form field already reported it (e.g. not a number)
            values[key] = cleaned.get(name)
        clean, errors = config_validate(values)
        for key, message in errors.items():
            self.add_error(field_name(key), message)
        self.config_values = {k: v for k, v in clean.items() if saved.get(k) != v}
        return cleaned


def _field_for(key: str, default: Any, current: Any, source: str, env_value: Any) -> list[tuple[str, forms.Field]]:
    name = field_name(key)
    secret = key in SECRET_KEYS
    help_bits = [f"Source: {source}", f"default: {_display(mask_value(key, default))}", f"env: {env_name(key)}"]
    fields: list[tuple[str, forms.Field]] = []
    label = key
    if env_value is not None:
        shown = mask_value(key, env_value) if secret else env_value
        help_bits[0] = f"Source: environment ({env_name(key)} overrides the saved value)"
        field: forms.Field = forms.CharField(label=label, required=False, disabled=True, initial=_display(shown))
    elif secret:
        help_bits.insert(1, f"saved: {_display(mask_value(key, current)) if current else 'empty'}; leave blank to keep")
        if isinstance(default, list):
            field = forms.CharField(label=label, required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "one per line"}))
        else:
            field = forms.CharField(label=label, required=False, widget=forms.PasswordInput(render_value=False))
        fields.append((name + CLEAR_SUFFIX, forms.BooleanField(label=f"clear {key}", required=False)))
    elif isinstance(default, bool):
        field = forms.BooleanField(label=label, required=False, initial=current)
    elif key in CHOICES:
        field = forms.ChoiceField(label=label, choices=[(c, c) for c in CHOICES[key]], initial=current)
    elif isinstance(default, int):
        field = forms.IntegerField(label=label, initial=current)
    elif isinstance(default, float):
        field = forms.FloatField(label=label, initial=current)
    elif isinstance(default, list):
        field = forms.CharField(label=label, required=False, initial="\n".join(str(v) for v in current),
                                widget=forms.Textarea(attrs={"rows": 2, "placeholder": "one per line"}))
    else:
        field = forms.CharField(label=label, required=False, initial=current,
                                widget=forms.TextInput(attrs={"size": 80}) if len(str(current)) > 30 else forms.TextInput())
    field.help_text = " · ".join(help_bits)
    return [(name, field), *fields]


def runtime_config_form() -> type[forms.ModelForm]:
    from core.config import config

    saved = config_saved()
    env = env_overrides()
    sources = config().sources
    attrs: dict[str, Any] = {}
    for key, default in defaults().items():
        for name, field in _field_for(key, default, saved.get(key, default), sources.get(key, "default"), env.get(key)):
            attrs[name] = field
    return type("RuntimeConfigForm", (RuntimeConfigFormBase,), attrs)


@admin.register(RuntimeConfig)
class RuntimeConfigAdmin(admin.ModelAdmin):
    save_on_top = True

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # A singleton: the list is the one form.
        config_seed()
        return HttpResponseRedirect(reverse("admin:grok2api_runtimeconfig_change", args=[1]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            # settings that are saved but do nothing (the same lines import_config prints)
            view = config()
            for line in config_warnings({key: view.get(key) for key in defaults()}):
                messages.warning(request, f"Saved but without effect: {line}")  # the prefix keeps capfirst off the key
        return super().change_view(request, object_id, form_url, extra_context)

    def get_fieldsets(self, request, obj=None):
        sections: dict[str, list] = {}
        for key in defaults():
            name = field_name(key)
            entry: Any = (name, name + CLEAR_SUFFIX) if key in SECRET_KEYS and key not in env_overrides() else name
            sections.setdefault(_section(key), []).append(entry)
        return [(section, {"fields": fields}) for section, fields in sections.items()]

    def get_form(self, request, obj=None, change=False, **kwargs):
        return runtime_config_form()

    def save_model(self, request, obj, form, change) -> None:
        if form.config_values:
            config_save(values=form.config_values)
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change) -> None:
        pass

    def construct_change_message(self, request, form, formsets, add=False):
        keys = sorted(getattr(form, "config_values", {}))
        return [{"changed": {"fields": keys}}] if keys else []


class ProxyForm(forms.ModelForm):
    """The URL may carry credentials: it is never rendered back; blank on change keeps it."""

    url = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"size": 60}),
        help_text="http://, https://, socks5:// or socks5h:// URL, credentials allowed (user:pass@host:port). Stored encrypted.",
    )

    class Meta:
        model = Proxy
        fields = ["url", "label", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["url"].help_text = f"Current: {mask_url(self.instance.url)}. Leave blank to keep it. " + self.fields["url"].help_text
        self.initial.pop("url", None)

    def clean_url(self) -> str:
        url = (self.cleaned_data.get("url") or "").strip()
        if not url:
            if self.instance.pk:
                return self.instance.url
            raise forms.ValidationError("Enter the proxy URL.")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https", "socks4", "socks4a", "socks5", "socks5h") or not parsed.hostname:
            raise forms.ValidationError("Expected a URL such as http://host:port or socks5://user:pass@host:port.")
        try:
            parsed.port
        except ValueError:
            raise forms.ValidationError("The port must be a number between 1 and 65535.") from None
        return url


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    form = ProxyForm
    list_display = ("__str__", "masked_url", "enabled", "healthy", "success_count", "fail_count", "last_error", "last_used_at")
    list_filter = ("enabled", "healthy")
    search_fields = ("label",)
    actions = ("enable", "disable")

    @admin.display(description="URL")
    def masked_url(self, obj: Proxy) -> str:
        return mask_url(obj.url)

    def save_model(self, request, obj, form, change) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            stamp_bump("proxies")

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            super().delete_model(request, obj)
            stamp_bump("proxies")

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            super().delete_queryset(request, queryset)
            stamp_bump("proxies")

    @admin.action(description="Enable selected proxies")
    def enable(self, request, queryset) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected proxies")
    def disable(self, request, queryset) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        with transaction.atomic():
            count = queryset.update(enabled=enabled, healthy=True, fail_count=0) if enabled else queryset.update(enabled=False)
            stamp_bump("proxies")
        self.message_user(request, f"{count} prox{'y' if count == 1 else 'ies'} {'enabled' if enabled else 'disabled'}.", messages.SUCCESS)


@admin.register(OperatorAlert)
class OperatorAlertAdmin(admin.ModelAdmin):
    list_display = ("kind", "endpoint", "egress", "count", "last_at", "resolved", "short_hint")
    list_filter = ("resolved", "kind")
    search_fields = ("message", "endpoint", "egress")
    readonly_fields = ("kind", "endpoint", "egress", "message", "hint", "count", "first_at", "last_at")
    fields = ("kind", "endpoint", "egress", "message", "hint", "count", "first_at", "last_at", "resolved")
    actions = ("mark_resolved",)

    def has_add_permission(self, request) -> bool:
        return False  # alerts are raised by the gateway, not typed in

    @admin.display(description="hint")
    def short_hint(self, obj: OperatorAlert) -> str:
        return obj.hint[:120] + ("…" if len(obj.hint) > 120 else "")

    @admin.action(description="Mark selected alerts resolved")
    def mark_resolved(self, request, queryset) -> None:
        count = queryset.filter(resolved=False).update(resolved=True, last_at=timezone.now())
        self.message_user(request, f"{count} alert(s) marked resolved.", messages.SUCCESS)
