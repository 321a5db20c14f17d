"""Account admin: masked tokens, write-only token field, bulk import, actions."""
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts import maintenance
from accounts.models import Account, TierChange

pytestmark = pytest.mark.django_db

SECRET = "sim-super-very-secret-token-abcd"


def quota(remaining, total=50):
    return {"remaining": remaining, "total": total, "window_seconds": 7200, "reset_at": time.time() + 600 if remaining == 0 else None,
            "synced_at": time.time(), "source": 1}


def test_the_list_masks_tokens_and_shows_per_mode_quota(admin_client, make_account):
    make_account(SECRET, quotas={"auto": quota(0), "fast": quota(77, total=140)}, tags=["team-a"], note="primary")
    page = admin_client.get(reverse("admin:accounts_account_changelist")).content.decode()
    assert SECRET not in page and "abcd" in page
    assert "auto 0/50 · resets " in page and "fast 77/140" in page
    assert "Import tokens" in page


def test_search_finds_by_tag_note_and_last4(admin_client, make_account):
    make_account(SECRET, tags=["team-a"], note="primary")
    make_account("sim-super-other-token-wxyz", tags=["team-b"])
    url = reverse("admin:accounts_account_changelist")
    for term, present, absent in (("team-a", "abcd", "wxyz"), ("primary", "abcd", "wxyz"), ("wxyz", "wxyz", "abcd")):
        page = admin_client.get(url, {"q": term}).content.decode()
        assert present in page and "••••••" + absent not in page, term


def test_the_change_view_never_shows_the_token_and_replaces_it_when_typed(admin_client, make_account):
    a = make_account(SECRET)
    url = reverse("admin:accounts_account_change", args=[a.pk])
    page = admin_client.get(url).content.decode()
    assert SECRET not in page and 'type="password"' in page
    form = {"pool": "super", "status": "active", "state_reason": "", "tags": "[]", "note": "", "user_id": "", "health": "1.0", "new_token": ""}
    assert admin_client.post(url, form).status_code == 302
    assert Account.objects.get().token == SECRET  # blank keeps it
    assert admin_client.post(url, {**form, "new_token": "sso=sim-super-replaced-1234"}).status_code == 302
    row = Account.objects.get()
    assert row.token == "sim-super-replaced-1234" and row.token_last4 == "1234"


def test_bulk_import_page_imports_pasted_and_uploaded_tokens(admin_client):
    url = reverse("admin:accounts_account_import")
    page = admin_client.post(url, {"tokens": "sim-super-paste-1\n# note\nsim-super-paste-1\n\x01bad\n", "pool": "super", "tags": "x"}).content.decode()
    assert "imported 1, duplicate 1, invalid 1" in page
    upload = SimpleUploadedFile("tokens.txt", b"\xef\xbb\xbfsim-heavy-upload-1\n", content_type="text/plain")
    page = admin_client.post(url, {"file": upload, "pool": "heavy"}).content.decode()
    assert "imported 1" in page
    assert dict(Account.objects.values_list("token_last4", "pool")) == {"te-1": "super", "ad-1": "heavy"}
    assert "Paste tokens or choose a file" in admin_client.post(url, {"pool": "super"}).content.decode()


def test_actions_enable_disable_and_soft_delete(admin_client, make_account):
    a = make_account(SECRET)
    url = reverse("admin:accounts_account_changelist")
    admin_client.post(url, {"action": "action_disable", "_selected_action": [a.pk]})
    assert Account.objects.get().status == "disabled"
    admin_client.post(url, {"action": "action_enable", "_selected_action": [a.pk]})
    assert Account.objects.get().status == "active"
    admin_client.post(url, {"action": "action_delete", "_selected_action": [a.pk]})
    row = Account.objects.get()
    assert row.deleted_at is not None
    assert "abcd" not in admin_client.get(url).content.decode()  # hidden by default
    assert "abcd" in admin_client.get(url, {"deleted": "yes"}).content.decode()


@pytest.mark.django_db(transaction=True)
def test_refresh_quota_now_probes_the_selected_accounts(admin_client, make_account, sim, monkeypatch, set_config):
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    set_config()
    a = make_account("sim-super-admin-refresh")
    url = reverse("admin:accounts_account_changelist")
    page = admin_client.post(url, {"action": "action_refresh", "_selected_action": [a.pk]}, follow=True).content.decode()
    assert "synced" in page and "auto 50/50" in page
    assert Account.objects.get().quotas["auto"]["source"] == 1


def test_the_tier_history_shows_on_the_account_page_and_as_a_column_and_filter_on_the_list(admin_client, make_account):
    moved = make_account("sim-super-moved-1111", pool="super", pool_detected=True)
    steady = make_account("sim-basic-steady-2222", pool="basic", pool_detected=True)
    TierChange.objects.create(account=moved, old="", new="basic", reason="import with pool auto: tier probe incomplete")
    TierChange.objects.create(account=steady, old="", new="basic", reason="import with pool auto: tier detected: basic")
    maintenance.account_set_pool(account=moved, pool="heavy", reason="upgraded by the operator")
    page = admin_client.get(reverse("admin:accounts_account_change", args=[moved.pk])).content.decode()
    assert "Tier history" in page and "upgraded by the operator" in page and "— (import)" in page
    assert page.index("upgraded by the operator") < page.index("tier probe incomplete")  # newest first
    url = reverse("admin:accounts_account_changelist")
    listing = admin_client.get(url).content.decode()
    assert "super → heavy" in listing and "(1×)" in listing
    ever = admin_client.get(url, {"tier_changed": "ever"}).content.decode()
    never = admin_client.get(url, {"tier_changed": "never"}).content.decode()
    day = admin_client.get(url, {"tier_changed": "day"}).content.decode()
    assert "1111" in ever and "2222" not in ever
    assert "2222" in never and "1111" not in never
    assert "1111" in day


def test_a_pool_edited_in_admin_is_recorded_and_no_longer_re_classified(admin_client, make_account):
    a = make_account("sim-super-edit-3333", pool="super", pool_detected=True)
    url = reverse("admin:accounts_account_change", args=[a.pk])
    form = {"pool": "heavy", "status": "active", "state_reason": "", "tags": "[]", "note": "", "user_id": "", "health": "1.0", "new_token": ""}
    assert admin_client.post(url, form).status_code == 302
    row = Account.objects.get()
    assert row.pool == "heavy" and not row.pool_detected
    [change] = TierChange.objects.all()
    assert (change.old, change.new, change.reason) == ("super", "heavy", "set in admin by admin")
    assert admin_client.post(url, form).status_code == 302  # saved again unchanged: no new history row
    assert TierChange.objects.count() == 1
