"""The admin is the dashboard: every page renders, config edits are validated, keys shown once."""
from __future__ import annotations

import json
import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from core.config import config_get, config_saved, config_seed
from accounts.models import Account
from core.models import OperatorAlert, Proxy, RuntimeConfig
from gateway.models import ApiKey, UsageRecord
from core.crypto import hash_api_key


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", None)  # no hash: fast
    client.force_login(user)
    return client


@pytest.fixture
def rows(db):
    """One row of every model we know, so change pages have something to open."""
    config_seed()
    account = Account(pool="super")
    account.set_token("tok-admin-test-1234")
    account.save()
    Proxy.objects.create(url="http://u:secretpw@10.0.0.9:3128", label="office")
    OperatorAlert.objects.create(kind="anti_bot", endpoint="/rest/app-chat/conversations/new", egress="direct",
                                 message="Request rejected by anti-bot rules.", hint="Copy a fresh x-statsig-id from your browser.")
    key = ApiKey.objects.create(label="ci", key_hash=hash_api_key("sk-x"), prefix="sk-g2a-xxxx")
    UsageRecord.objects.create(api_key=key, api_key_label="ci", endpoint="chat", model="grok-4.20-auto", account=account)
    from media.models import CachedMedia, VideoJob

    VideoJob.objects.create(id="video_" + "0" * 32, model="grok-imagine-video", prompt="a cat")
    CachedMedia.objects.create(media_type="image", media_id="abc", file_name="abc.jpg", content_type="image/jpeg")


@pytest.mark.django_db
def test_every_admin_page_renders_for_staff(staff, rows):
    assert admin.site._registry, "no admin registered"
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = staff.get(reverse("admin:%s_%s_changelist" % info), follow=True)
        assert changelist.status_code == 200, info
        if model_admin.has_add_permission(changelist.wsgi_request):
            assert staff.get(reverse("admin:%s_%s_add" % info)).status_code == 200, info
        obj = model._default_manager.first()
        if obj is not None:
            page = staff.get(reverse("admin:%s_%s_change" % info, args=[obj.pk]))
            assert page.status_code == 200, info
    assert staff.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
def test_admin_requires_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get(reverse("admin:grok2api_runtimeconfig_changelist")).status_code == 302


@pytest.mark.django_db
def test_the_index_shows_pool_health_alerts_and_the_app_url_warning(staff, rows):
    page = staff.get("/admin/").content.decode()
    assert 'id="pool-health"' in page
    assert re.search(r"<th scope=\"row\">super</th><td>1</td>", page)
    assert "Copy a fresh x-statsig-id from your browser." in page
    assert "app.app_url is not set" in page


@pytest.mark.django_db
def test_the_index_warns_while_the_api_is_open_and_not_once_a_key_exists(staff):
    config_seed()
    assert "/v1 is open" in staff.get("/admin/").content.decode()
    ApiKey.objects.create(label="ci", key_hash=hash_api_key("sk-x"), prefix="sk-g2a-xxxx")
    assert "/v1 is open" not in staff.get("/admin/").content.decode()


@pytest.mark.django_db
def test_the_index_charts_the_last_24_hours_of_usage_by_model_with_the_vendored_chart_library(staff, rows):
    from django.contrib.staticfiles import finders

    from gateway.ledger import usage_rollup

    assert 'id="usage-chart-data"' not in staff.get("/admin/").content.decode()  # nothing rolled up yet
    usage_rollup()
    page = staff.get("/admin/").content.decode()
    data = json.loads(re.search(r'<script id="usage-chart-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data["models"]["grok-4.20-auto"]["requests"][-1] == 1
    for path in ("vendor/chart.umd.min.js", "grok2api/usage-charts.js"):
        assert f'src="/static/{path}"' in page and finders.find(path), path
    assert "cdn" not in page.lower()


@pytest.mark.django_db
def test_secrets_never_appear_in_admin_pages(staff, rows):
    from core.config import config_save

    config_save(values={"app.api_key": "sk-config-secret-9876"})
    for url in (reverse("admin:grok2api_runtimeconfig_change", args=[1]),
                reverse("admin:grok2api_proxy_changelist"),
                reverse("admin:grok2api_proxy_change", args=[Proxy.objects.get().pk])):
        html = staff.get(url).content.decode()
        assert "sk-config-secret" not in html and "secretpw" not in html, url
    assert "••••••9876" in staff.get(reverse("admin:grok2api_runtimeconfig_change", args=[1])).content.decode()


def _config_post(staff, **changes):
    """Submit the runtime config form as a browser would: every current initial value plus changes."""
    url = reverse("admin:grok2api_runtimeconfig_change", args=[1])
    form = staff.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return staff.post(url, data)


@pytest.mark.django_db
def test_a_valid_config_edit_is_saved_and_takes_effect(staff, rows):
    response = _config_post(staff, chat__timeout="75", features__stream=None, app__api_key="sk-new-key-0001")
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    saved = config_saved()
    assert saved["chat.timeout"] == 75
    assert saved["features.stream"] is False
    assert saved["app.api_key"] == "sk-new-key-0001"
    assert config_get("chat.timeout") == 75
    assert "sk-new-key" not in json.dumps(RuntimeConfig.objects.get(pk=1).data)

    # A blank secret keeps the saved value; the clear box empties it.
    _config_post(staff, chat__timeout="76")
    assert config_saved()["app.api_key"] == "sk-new-key-0001"
    _config_post(staff, app__api_key__clear="on")
    assert config_saved()["app.api_key"] == ""


@pytest.mark.django_db
def test_an_invalid_config_edit_is_refused_with_field_errors_and_nothing_saved(staff, rows):
    before = RuntimeConfig.objects.get(pk=1).data
    response = _config_post(staff, chat__timeout="90", proxy__egress__mode="bogus", upstream__web_base_url="ftp://x",
                            retry__on_codes="429,abc")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "proxy__egress__mode" in errors
    assert "expected a URL starting with http:// or https://" in errors["upstream__web_base_url"][0]
    assert "HTTP status codes" in errors["retry__on_codes"][0]
    assert RuntimeConfig.objects.get(pk=1).data == before


@pytest.mark.django_db
def test_environment_overrides_are_shown_read_only_with_their_source(staff, rows, monkeypatch):
    monkeypatch.setenv("GROK_CHAT_TIMEOUT", "33")
    page = staff.get(reverse("admin:grok2api_runtimeconfig_change", args=[1]))
    form = page.context["adminform"].form
    assert form.fields["chat__timeout"].disabled
    assert "Source: environment" in form.fields["chat__timeout"].help_text
    assert "Source: default" in form.fields["image__timeout"].help_text
    _config_post(staff, image__timeout="44")
    assert config_saved()["chat.timeout"] == 60  # the disabled field did not write the env value to the DB
    assert config_saved()["image.timeout"] == 44


@pytest.mark.django_db
def test_a_new_api_key_is_shown_once_and_stored_hashed(staff):
    response = staff.post(reverse("admin:gateway_apikey_add"), {"label": "laptop", "enabled": "on", "allowed_models": "grok-4.20-auto"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    match = re.search(r"(sk-g2a-[A-Za-z0-9_-]{20,})", " ".join(shown))
    assert match, shown
    key = match.group(1)
    row = ApiKey.objects.get(label="laptop")
    assert row.key_hash == hash_api_key(key)
    assert row.allowed_models == ["grok-4.20-auto"]
    assert key not in staff.get(reverse("admin:gateway_apikey_change", args=[row.pk])).content.decode()
    assert key not in staff.get(reverse("admin:gateway_apikey_changelist")).content.decode()


@pytest.mark.django_db
def test_an_api_keys_limits_and_expiry_are_edited_in_the_admin(staff):
    row = ApiKey.objects.create(label="limited", key_hash="0" * 64, prefix="sk-g2a-x")
    url = reverse("admin:gateway_apikey_change", args=[row.pk])
    response = staff.post(url, {"label": "limited", "enabled": "on", "allowed_models": "", "requests_per_minute": "5",
                                "tokens_per_minute": "1000", "max_concurrent_requests": "2", "daily_token_budget": "",
                                "monthly_token_budget": "100000", "expires_at_0": "2030-01-02", "expires_at_1": "03:04:05"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    row.refresh_from_db()
    assert (row.requests_per_minute, row.tokens_per_minute, row.max_concurrent_requests, row.daily_token_budget,
            row.monthly_token_budget) == (5, 1000, 2, None, 100000)
    assert row.expires_at.year == 2030
    page = staff.get(reverse("admin:gateway_apikey_changelist")).content.decode()
    assert "requests per minute" in page.lower()


@pytest.mark.django_db
def test_an_api_key_with_an_unknown_model_is_refused(staff):
    response = staff.post(reverse("admin:gateway_apikey_add"), {"label": "x", "enabled": "on", "allowed_models": "gpt-5"})
    assert response.status_code == 200
    assert "Unknown model id(s): gpt-5" in response.context["adminform"].form.errors["allowed_models"][0]
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_usage_is_read_only(staff, rows):
    record = UsageRecord.objects.get()
    assert staff.post(reverse("admin:gateway_usagerecord_change", args=[record.pk]), {"model": "x"}).status_code == 403
    assert staff.get(reverse("admin:gateway_usagerecord_add")).status_code == 403


@pytest.mark.django_db
def test_a_proxy_url_is_validated_masked_and_kept_when_left_blank(staff, rows):
    proxy = Proxy.objects.get()
    url = reverse("admin:grok2api_proxy_change", args=[proxy.pk])
    assert staff.post(url, {"url": "", "label": "renamed", "enabled": "on"}).status_code == 302
    proxy.refresh_from_db()
    assert proxy.url == "http://u:secretpw@10.0.0.9:3128" and proxy.label == "renamed"
    bad = staff.post(reverse("admin:grok2api_proxy_add"), {"url": "ftp://x", "label": "bad", "enabled": "on"})
    assert bad.status_code == 200 and "url" in bad.context["adminform"].form.errors
    assert "10.0.0.9:3128" in staff.get(reverse("admin:grok2api_proxy_changelist")).content.decode()
