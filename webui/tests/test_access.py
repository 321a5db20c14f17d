"""Access rules of /webui/* through Django's test client (sessions, CSRF, staff users)."""
from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ("/webui/chat", "/webui/masonry", "/webui/chatkit")


def test_every_route_is_404_when_the_pages_are_disabled(client, set_config):
    set_config(app__webui_enabled="false", app__webui_key="")
    for path in (*PAGES, "/webui/login"):
        response = client.get(path)
        assert response.status_code == 404
        assert b"The web pages are disabled" in response.content
    response = client.get("/webui/api/models")
    assert response.status_code == 404
    assert "disabled" in response.json()["error"]["message"]


def test_the_pages_open_directly_without_a_key(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="")
    for path in PAGES:
        assert client.get(path).status_code == 200
    assert client.get("/webui/login").status_code == 302  # nothing to sign in to


def test_a_key_sends_visitors_to_the_login_page(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="s3cret-webui")
    response = client.get("/webui/masonry")
    assert response.status_code == 302
    assert response["Location"] == "/webui/login?next=%2Fwebui%2Fmasonry"
    api = client.get("/webui/api/models")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "webui_session_required"


def test_a_wrong_key_gets_a_clear_message_and_no_access(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="s3cret-webui")
    response = client.post("/webui/login", {"key": "wrong", "next": "/webui/chat"})
    assert response.status_code == 403
    assert b"That key is not correct" in response.content
    assert client.get("/webui/chat").status_code == 302
    empty = client.post("/webui/login", {"key": "  "})
    assert empty.status_code == 400
    assert b"Enter the WebUI key" in empty.content


def test_the_right_key_signs_in_until_logout(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="s3cret-webui")
    before = client.cookies.get("sessionid")
    response = client.post("/webui/login", {"key": "s3cret-webui", "next": "/webui/chatkit"})
    assert response.status_code == 302
    assert response["Location"] == "/webui/chatkit"
    assert client.cookies["sessionid"].value != (before.value if before else None)
    assert client.get("/webui/chat").status_code == 200
    assert client.post("/webui/logout").status_code == 302
    assert client.get("/webui/chat").status_code == 302


def test_changing_the_key_signs_every_session_out(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="first-key")
    client.post("/webui/login", {"key": "first-key"})
    assert client.get("/webui/chat").status_code == 200
    set_config(app__webui_key="second-key")
    assert client.get("/webui/chat").status_code == 302


def test_login_refuses_an_offsite_next_url(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="k")
    response = client.post("/webui/login", {"key": "k", "next": "https://evil.example/webui/chat"})
    assert response["Location"] == "/webui/chat"


def test_login_form_is_csrf_protected(set_config):
    set_config(app__webui_enabled="true", app__webui_key="k")
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/webui/login", {"key": "k"}).status_code == 403
    page = strict.get("/webui/login")
    token = page.cookies["csrftoken"].value
    assert strict.post("/webui/login", {"key": "k", "csrfmiddlewaretoken": token}).status_code == 302


def test_api_posts_need_the_csrf_header(set_config):
    set_config(app__webui_enabled="true", app__webui_key="")
    strict = Client(enforce_csrf_checks=True)
    strict.get("/webui/chat")
    refused = strict.post("/webui/api/voice/token", b"{}", content_type="application/json")
    assert refused.status_code == 403
    token = strict.cookies["csrftoken"].value
    bad = strict.post("/webui/api/voice/token", b'{"speed": 9}', content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "speed"


def test_staff_signed_in_to_admin_get_in_without_the_key(client, set_config, django_user_model):
    set_config(app__webui_enabled="true", app__webui_key="k")
    staff = django_user_model.objects.create_user("op", password="pw-123456", is_staff=True)
    client.force_login(staff)
    assert client.get("/webui/chat").status_code == 200
    plain = django_user_model.objects.create_user("user", password="pw-123456")
    other = Client()
    other.force_login(plain)
    assert other.get("/webui/chat").status_code == 302


def test_the_pages_never_contain_the_api_key(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="", app__api_key="sk-server-side-only")
    assert client.post("/webui/login", {"key": "sk-server-side-only"}).status_code == 302
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200
        assert b"sk-server-side-only" not in page.content


# ------------------------------------------------------------------ no page key: the /v1 key guards the pages


CHAT_BODY = {"model": "grok-4.20-fast", "messages": [{"role": "user", "content": " "}]}


def _chat(client):
    return client.post("/webui/api/chat/completions", CHAT_BODY, content_type="application/json")


def test_without_a_page_key_the_pages_ask_for_the_v1_key_when_v1_needs_one(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="", app__api_key="sk-v1-only")
    assert client.get("/webui/chat").status_code == 302
    refused = _chat(client)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "webui_session_required"
    login = client.get("/webui/login")
    assert login.status_code == 200
    assert b"API key" in login.content
    wrong = client.post("/webui/login", {"key": "sk-v1-onlyX"})
    assert wrong.status_code == 403
    assert b"That API key is not correct" in wrong.content
    assert client.post("/webui/login", {"key": "sk-v1-only", "next": "/webui/masonry"})["Location"] == "/webui/masonry"
    assert client.get("/webui/chat").status_code == 200
    assert _chat(client).json()["error"]["code"] == "empty_prompt"  # past the access check
    # removing that key from app.api_key ends the page session
    set_config(app__api_key="sk-another")
    assert client.get("/webui/chat").status_code == 302


@pytest.mark.django_db(transaction=True)  # the api_keys snapshot reads committed rows
def test_an_api_key_row_alone_closes_the_pages_and_opens_them_to_its_key(client, set_config):
    from gateway.models import ApiKey
    from core.crypto import hash_api_key

    set_config(app__webui_enabled="true", app__webui_key="", app__api_key="")
    assert client.get("/webui/chat").status_code == 200  # /v1 open → pages open
    row = ApiKey.objects.create(label="laptop", key_hash=hash_api_key("sk-row-key"), prefix="sk-row-k")
    assert client.get("/webui/chat").status_code == 302
    assert _chat(client).status_code == 401
    assert client.post("/webui/login", {"key": "sk-row-key"}).status_code == 302
    assert client.get("/webui/chat").status_code == 200
    # a key limited to some models does not open pages that serve every model
    ApiKey.objects.create(label="narrow", key_hash=hash_api_key("sk-narrow"), prefix="sk-narro", allowed_models=["grok-4.20-fast"])
    narrow = Client()
    assert narrow.post("/webui/login", {"key": "sk-narrow"}).status_code == 403
    assert narrow.get("/webui/chat").status_code == 302
    row.enabled = False
    row.save()
    assert client.get("/webui/chat").status_code == 302
    assert _chat(client).status_code == 401


def test_staff_get_in_without_a_key_when_the_v1_key_guards_the_pages(client, set_config, django_user_model):
    set_config(app__webui_enabled="true", app__webui_key="", app__api_key="sk-v1-only")
    staff = django_user_model.objects.create_user("op", password="pw-123456", is_staff=True)
    client.force_login(staff)
    assert client.get("/webui/chat").status_code == 200
    assert _chat(client).json()["error"]["code"] == "empty_prompt"


def test_a_page_key_is_asked_instead_of_the_v1_key_when_both_are_set(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="page-key", app__api_key="sk-v1-only")
    assert client.post("/webui/login", {"key": "sk-v1-only"}).status_code == 403
    assert client.post("/webui/login", {"key": "page-key"}).status_code == 302
    assert client.get("/webui/chat").status_code == 200


def test_chat_api_names_the_empty_and_the_over_long_prompt(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="")
    empty = client.post("/webui/api/chat/completions", {"model": "grok-4.20-fast", "messages": [{"role": "user", "content": " "}]},
                        content_type="application/json")
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "messages[0].content"
    assert empty.json()["error"]["code"] == "empty_prompt"
    long = client.post("/webui/api/chat/completions",
                       {"model": "grok-4.20-fast", "messages": [{"role": "user", "content": "x" * 32001}]},
                       content_type="application/json")
    assert long.status_code == 400
    assert long.json()["error"]["code"] == "prompt_too_long"
    assert "32001" in long.json()["error"]["message"]


# ------------------------------------------------------------------ guessing: django-axes lockout


def _rewind_attempts(minutes: float) -> None:
    """Move axes' recorded failures into the past, as if that much time had gone by."""
    from datetime import timedelta

    from axes.models import AccessAttempt

    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= timedelta(minutes=minutes)
        attempt.save()


def test_wrong_page_keys_lock_the_client_out_until_the_cool_off(client, set_config, settings):
    set_config(app__webui_enabled="true", app__webui_key="the-page-key")
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert client.post("/webui/login", {"key": "guess"}).status_code == 403
    locked = client.post("/webui/login", {"key": "guess"})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    # the right key is refused too while the lock lasts, and nothing is signed in
    assert client.post("/webui/login", {"key": "the-page-key"}).status_code == 429
    assert client.get("/webui/chat").status_code == 302
    # the lock is per client address: another address still signs in
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.post("/webui/login", {"key": "the-page-key"}).status_code == 302
    # one cool-off later the right key works again
    _rewind_attempts(settings.AXES_COOLOFF_TIME * 60 + 1)
    assert client.post("/webui/login", {"key": "the-page-key"}).status_code == 302
    assert client.get("/webui/chat").status_code == 200


def test_wrong_v1_keys_on_the_page_login_lock_out_the_same_way(client, set_config, settings):
    set_config(app__webui_enabled="true", app__webui_key="", app__api_key="sk-v1-only")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/webui/login", {"key": "sk-guess"})
    assert client.post("/webui/login", {"key": "sk-v1-only"}).status_code == 429
    assert client.get("/webui/chat").status_code == 302


def test_a_right_page_key_clears_earlier_failures(client, set_config, settings):
    set_config(app__webui_enabled="true", app__webui_key="the-page-key")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/webui/login", {"key": "guess"})
    assert client.post("/webui/login", {"key": "the-page-key"}).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post("/webui/login", {"key": "guess"}).status_code == 403


def test_a_failed_page_key_is_recorded_without_the_key(client, set_config):
    from axes.models import AccessAttempt

    set_config(app__webui_enabled="true", app__webui_key="the-page-key")
    client.post("/webui/login", {"key": "the-page-kez"})
    attempt = AccessAttempt.objects.get()
    assert attempt.username == "[web page key]"
    assert "the-page-kez" not in attempt.post_data
