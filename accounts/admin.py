"""Account admin (issue 4). Runtime config / proxy / alert admin lives in core/admin.py."""
from datetime import datetime, timedelta, timezone as dt_timezone

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Exists, Max, OuterRef
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import maintenance
from accounts.models import Account, TierChange
from accounts.tokenfile import token_normalize
from core import crypto
from core.snapshots import stamp_bump

SYNC_REFRESH_LIMIT = 50  # "refresh quota now" probes up to this many accounts inline, more are queued
MODE_LABELS = {"grok-420-computer-use-sa": "4.3"}
TIER_HISTORY_ROWS = 50  # newest tier changes shown on the account page (all are kept)


def _when(epoch) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(float(epoch), tz=dt_timezone.utc).strftime("%m-%d %H:%M")


class AccountForm(forms.ModelForm):
    """The token is write-only: never rendered, replaced only when a new value is typed."""

    new_token = forms.CharField(
        label="SSO token", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 60}),
        help_text="Write-only. Leave blank to keep the stored token. `sso=` prefixes and whitespace are removed.",
    )

    class Meta:
        model = Account
        fields = ("pool", "status", "state_reason", "tags", "note", "user_id", "health")

    def clean_new_token(self):
        raw = self.cleaned_data.get("new_token") or ""
        if not raw:
            if self.instance.pk is None:
                raise ValidationError("A token is required for a new account.")
            return ""
        token, error = token_normalize(raw)
        if error or not token:
            raise ValidationError(f"Invalid token: {error or 'empty'}.")
        fp = crypto.fingerprint(token)
        clash = Account.objects.filter(token_fingerprint=fp).exclude(pk=self.instance.pk).first()
        if clash is not None:
            raise ValidationError(f"This token is already stored (account #{clash.pk}).")
        return token

    def save(self, commit=True):
        account = super().save(commit=False)
        token = self.cleaned_data.get("new_token")
        if token:
            account.set_token(token)
        if commit:
            account.save()
        return account


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return (("no", "not deleted"), ("yes", "deleted"), ("all", "all"))

    def choices(self, changelist):
        value = self.value() or "no"
        for lookup, title in self.lookup_choices:
            yield {"selected": value == lookup, "query_string": changelist.get_query_string({self.parameter_name: lookup}), "display": title}

    def queryset(self, request, queryset):
        value = self.value() or "no"
        if value == "no":
            return queryset.filter(deleted_at__isnull=True)
        if value == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class ImportForm(forms.Form):
    tokens = forms.CharField(widget=forms.Textarea(attrs={"rows": 10, "cols": 80, "autocomplete": "off"}), required=False,
                             help_text="One SSO token per line; blank lines and # comments are skipped.")
    file = forms.FileField(required=False, help_text="…or a .txt file, one token per line.")
    pool = forms.ChoiceField(choices=[(p, p) for p in maintenance.IMPORT_POOLS], initial="auto",
                             help_text="auto probes each token's rate limits to detect basic / super / heavy.")
    tags = forms.CharField(required=False, help_text="Comma-separated tags.")
    dry_run = forms.BooleanField(required=False, label="Dry run (report only)")

    def clean(self):
        data = super().clean()
        if not data.get("tokens") and not data.get("file"):
            raise ValidationError("Paste tokens or choose a file.")
        return data


class TierChangedFilter(admin.SimpleListFilter):
    """Accounts whose tier moved after import (import rows have a blank `old`)."""

    title = "tier changed"
    parameter_name = "tier_changed"

    def lookups(self, request, model_admin):
        return (("day", "in the last 24 h"), ("ever", "since import"), ("never", "never"))

    def queryset(self, request, queryset):
        moves = TierChange.objects.filter(account=OuterRef("pk")).exclude(old="")
        if self.value() == "day":
            return queryset.filter(Exists(moves.filter(at__gte=timezone.now() - timedelta(hours=24))))
        if self.value() == "ever":
            return queryset.filter(Exists(moves))
        if self.value() == "never":
            return queryset.exclude(Exists(moves))
        return queryset


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    change_list_template = "admin/accounts/account/change_list.html"
    list_display = ("id", "masked", "pool", "tier_text", "status_text", "health_text", "quota_text", "last_use_at", "tags_text")
    list_display_links = ("id", "masked")
    list_filter = ("pool", TierChangedFilter, "status", DeletedFilter)
    search_fields = ("note", "token_last4")
    search_help_text = "Search by tag, note or the token's last 4 characters."
    list_per_page = 100
    readonly_fields = ("masked", "quota_table", "use_count", "fail_count", "sync_count", "last_use_at", "last_fail_at",
                       "last_fail_reason", "last_sync_at", "cooling_until", "pool_detected", "created_at", "updated_at",
                       "deleted_at", "ext", "tier_history")
    fieldsets = (
        (None, {"fields": ("masked", "new_token", "pool", "pool_detected", "status", "state_reason", "tags", "note", "user_id")}),
        ("Tier history", {"fields": ("tier_history",)}),
        ("Quotas and health", {"fields": ("quota_table", "health", "use_count", "fail_count", "sync_count", "last_use_at",
                                          "last_fail_at", "last_fail_reason", "last_sync_at", "cooling_until")}),
        ("Record", {"fields": ("created_at", "updated_at", "deleted_at", "ext"), "classes": ("collapse",)}),
    )
    actions = ("action_refresh", "action_enable", "action_disable", "action_delete")

    class Media:
        css = {"all": ("grok2api/admin-lists.css",)}

    # -- columns ------------------------------------------------------------------------------

    def get_queryset(self, request):
        # One query for the tier column: how often the tier moved after import, and when last.
        moved = TierChange.objects.exclude(old="").filter(account=OuterRef("pk"))
        return super().get_queryset(request).annotate(
            tier_moves=Count("tier_changes", filter=~models.Q(tier_changes__old="")),
            tier_moved_at=Max("tier_changes__at", filter=~models.Q(tier_changes__old="")),
            tier_last_old=moved.order_by("-at", "-id").values("old")[:1],
            tier_last_new=moved.order_by("-at", "-id").values("new")[:1],
        )

    @admin.display(description="tier changes", ordering="tier_moved_at")
    def tier_text(self, obj):
        moves = getattr(obj, "tier_moves", 0)
        if not moves:
            return "—"
        when = obj.tier_moved_at.astimezone(dt_timezone.utc).strftime("%m-%d %H:%M")
        return f"{obj.tier_last_old} → {obj.tier_last_new} {when} ({moves}×)"

    @admin.display(description="token", ordering="token_last4")
    def masked(self, obj):
        return obj.masked_token if obj.pk else ""

    @admin.display(description="status", ordering="status")
    def status_text(self, obj):
        if obj.deleted_at:
            return "deleted"
        if obj.state_reason == "blocked":
            return "expired (blocked upstream)"
        return f"{obj.status} ({obj.state_reason})" if obj.state_reason else obj.status

    @admin.display(description="health", ordering="health")
    def health_text(self, obj):
        return f"{obj.health:.2f}"

    @admin.display(description="quota left (* = stale)")
    def quota_text(self, obj):
        # One mode a line, and the reset time spelled out where a window is used up: the upstream
        # gives no reset time for a window that still has quota, so none is promised in the header.
        items = []
        for mode, w in sorted((obj.quotas or {}).items()):
            if not isinstance(w, dict):
                continue
            reset = f" · resets {_when(w.get('reset_at'))} UTC" if w.get("reset_at") and not w.get("remaining") else ""
            stale = "*" if w.get("stale") else ""
            items.append((MODE_LABELS.get(mode, mode), w.get("remaining"), w.get("total"), stale, reset))
        if not items:
            return "not synced"
        return format_html_join(format_html("<br>"), '<span class="quota">{} {}/{}{}{}</span>', items)

    @admin.display(description="per-mode quota")
    def quota_table(self, obj):
        rows = []
        for mode, w in sorted((obj.quotas or {}).items()):
            if isinstance(w, dict):
                source = {0: "default", 1: "real", 2: "estimated"}.get(w.get("source"), "?")
                rows.append((mode, w.get("remaining"), w.get("total"), w.get("window_seconds"), _when(w.get("reset_at")) or "—",
                             _when(w.get("synced_at")) or "—", source + (" (stale)" if w.get("stale") else "")))
        if not rows:
            return "not synced yet"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<table><tr><th>mode</th><th>remaining</th><th>total</th><th>window s</th><th>reset (UTC)</th>"
                           "<th>synced (UTC)</th><th>source</th></tr>{}</table>", body)

    @admin.display(description="tier changes (newest first)")
    def tier_history(self, obj):
        # A read-only table, not an inline: an inline formset would make every account form post
        # carry management-form fields for rows nobody may edit.
        if not obj.pk:
            return "—"
        changes = obj.tier_changes.all()[:TIER_HISTORY_ROWS]
        rows = [(c.at.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), c.old or "— (import)", c.new, c.reason) for c in changes]
        if not rows:
            return "no tier change recorded"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<table><tr><th>when (UTC)</th><th>old</th><th>new</th><th>why</th></tr>{}</table>", body)

    @admin.display(description="tags")
    def tags_text(self, obj):
        return format_html_join(" ", '<span class="tag">{}</span>', ((t,) for t in obj.tags or []))

    # -- search by tag (JSON lists are searched in Python: portable across SQLite / PostgreSQL) --

    def get_search_results(self, request, queryset, search_term):
        qs, distinct = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lower()
        if term:
            tagged = [pk for pk, tags in queryset.values_list("pk", "tags") if any(term in str(t).lower() for t in tags or [])]
            if tagged:
                qs = qs | queryset.filter(pk__in=tagged)
        return qs, distinct

    # -- saving / deleting ----------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        moved = change and "pool" in form.changed_data
        if moved:
            obj.pool_detected = False  # the operator's choice stands: later syncs no longer re-classify it
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if moved:
                TierChange.objects.create(account=obj, old=form.initial.get("pool", ""), new=obj.pool,
                                          reason=f"set in admin by {request.user}"[:300])
            stamp_bump("accounts")

    def delete_model(self, request, obj):
        maintenance.account_delete(account=obj, reason=f"deleted by {request.user}")

    def delete_queryset(self, request, queryset):
        for account in queryset:
            maintenance.account_delete(account=account, reason=f"deleted by {request.user}")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # our delete is soft (action_delete)
        return actions

    # -- actions --------------------------------------------------------------------------------

    @admin.action(description="Refresh quota now")
    def action_refresh(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        if len(ids) > SYNC_REFRESH_LIMIT:
            from accounts.tasks import quota_refresh

            quota_refresh.delay(account_ids=ids)
            self.message_user(request, f"Queued a quota refresh of {len(ids)} accounts.", messages.INFO)
            return
        from accounts.quota import quota_refresh as refresh

        for r in refresh(account_ids=ids, trigger=f"admin action 'Refresh quota now' by {request.user}"):
            level = messages.SUCCESS if r.ok else messages.WARNING
            self.message_user(request, f"#{r.account_id} ••••{r.last4} [{r.pool}]: {r.message}", level)

    @admin.action(description="Enable selected accounts")
    def action_enable(self, request, queryset):
        for account in queryset:
            maintenance.account_enable(account=account, reason=f"enabled by {request.user}")
        self.message_user(request, f"Enabled {queryset.count()} account(s).", messages.SUCCESS)

    @admin.action(description="Disable selected accounts")
    def action_disable(self, request, queryset):
        for account in queryset:
            maintenance.account_disable(account=account, reason=f"disabled by {request.user}")
        self.message_user(request, f"Disabled {queryset.count()} account(s).", messages.SUCCESS)

    @admin.action(description="Delete selected accounts (soft)")
    def action_delete(self, request, queryset):
        n = 0
        for account in queryset:
            maintenance.account_delete(account=account, reason=f"deleted by {request.user}")
            n += 1
        self.message_user(request, f"Deleted {n} account(s).", messages.SUCCESS)

    # -- bulk import page ---------------------------------------------------------------------

    def get_urls(self):
        extra = [path("import/", self.admin_site.admin_view(self.import_view), name="accounts_account_import")]
        return extra + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            return redirect(reverse("admin:accounts_account_changelist"))
        report = None
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES)
            if form.is_valid():
                data = form.cleaned_data
                blob = data["file"].read() if data.get("file") else data["tokens"].encode()
                report = maintenance.account_import(
                    tokens=blob, pool=data["pool"], tags=[t for t in (data.get("tags") or "").split(",") if t.strip()],
                    dry_run=bool(data.get("dry_run")),
                )
                self.message_user(request, report.summary(), messages.SUCCESS if not report.invalid else messages.WARNING)
        else:
            form = ImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import accounts",
            "opts": self.model._meta,
            "form": form,
            "report": report,
        }
        return TemplateResponse(request, "admin/accounts/account/import.html", context)
