"""Classification tests: one per row of the docs/upstream-protocol.md §11.2 catalogue / §11.3 procedure / §11.4 matrix.

HTTP bodies come from grokweb/tests/fixtures/http__<case>.{json,html}.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from grokweb.classify import (
    UpstreamError,
    UpstreamKind,
    classify_http,
    classify_inband,
    classify_transport,
    classify_ws_error,
    classify_ws_handshake,
)

FIXTURES = Path(__file__).parent / "fixtures"
CHAT = "/rest/app-chat/conversations/new"
JSON = "application/json"
HTML = "text/html; charset=UTF-8"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def http(status: int, name: str, content_type: str = JSON, **kw) -> UpstreamError:
    return classify_http(status=status, body=body(name), content_type=content_type, endpoint=CHAT, **kw)


# ------------------------------------------------------------------------- §11.2 catalogue rows


def test_it_classifies_a_cloudflare_challenge_page_as_cloudflare():
    err = http(403, "http__cloudflare.html", HTML)
    assert err.kind is UpstreamKind.CLOUDFLARE
    assert (err.status, err.type, err.code) == (502, "upstream_error", "upstream_cloudflare_challenge")
    assert err.retry_elsewhere is False and err.is_operator_problem
    assert "cf_clearance" in err.message and "User-Agent" in err.message and "same egress IP" in err.message
    assert CHAT in err.message
    assert err.detail == "HTML page 'Just a moment...'"


def test_it_classifies_a_cloudflare_marker_on_a_503_as_cloudflare():
    assert http(503, "http__cloudflare_block_503.html", HTML).kind is UpstreamKind.CLOUDFLARE


def test_it_classifies_an_empty_html_403_as_cloudflare():
    err = classify_http(status=403, body=b"", content_type="text/html", endpoint=CHAT)
    assert err.kind is UpstreamKind.CLOUDFLARE


def test_it_sniffs_an_html_403_without_content_type_as_cloudflare():
    err = classify_http(status=403, body=body("http__cloudflare.html"), content_type="", endpoint=CHAT)
    assert err.kind is UpstreamKind.CLOUDFLARE


def test_it_classifies_the_code_7_anti_bot_rejection_as_anti_bot_with_the_operator_hint():
    err = http(403, "http__antibot.json")
    assert err.kind is UpstreamKind.ANTI_BOT
    assert (err.status, err.type, err.code) == (502, "upstream_error", "upstream_anti_bot")
    assert err.message == (
        "Upstream rejected the request as automated traffic (anti-bot, code 7) on /rest/app-chat/conversations/new. "
        "The operator must check the account session or supply a fresh x-statsig-id copied from their browser."
    )
    assert err.retry_elsewhere is False and err.is_operator_problem and err.fail_reason == "anti_bot"


def test_it_classifies_a_401_with_the_invalid_credentials_marker_as_auth_invalid():
    err = http(401, "http__invalid_session.json")
    assert err.kind is UpstreamKind.AUTH_INVALID
    assert err.account_action == "expire" and err.retry_elsewhere
    assert (err.status, err.code) == (502, "upstream_auth_invalid")
    assert err.detail == "Failed to look up session ID. [WKE=unauthenticated:invalid-credentials]"


def test_it_classifies_the_invalid_credentials_body_on_a_403_as_auth_invalid():
    assert http(403, "http__invalid_session.json").kind is UpstreamKind.AUTH_INVALID


def test_it_classifies_a_blocked_user_as_blocked():
    err = http(403, "http__blocked_user.json")
    assert err.kind is UpstreamKind.BLOCKED
    assert err.account_action == "disable" and err.retry_elsewhere
    assert (err.status, err.code) == (502, "upstream_account_blocked")


def test_it_classifies_a_rejected_email_domain_400_as_blocked():
    assert http(400, "http__email_domain_rejected.json").kind is UpstreamKind.BLOCKED


def test_it_classifies_content_moderation_as_moderated_not_auth_or_cloudflare():
    err = http(403, "http__moderated.json")
    assert err.kind is UpstreamKind.MODERATED
    assert (err.status, err.type, err.code) == (400, "invalid_request_error", "content_policy_violation")
    assert err.retry_elsewhere is False and err.account_action == "none" and err.health_factor is None


def test_it_classifies_a_429_code_8_as_rate_limited():
    err = http(429, "http__rate_limited.json", mode="auto")
    assert err.kind is UpstreamKind.RATE_LIMITED
    assert (err.status, err.type, err.code) == (429, "rate_limit_exceeded", "rate_limit_exceeded")
    assert err.retry_elsewhere and err.health_factor == 0.45 and err.mode == "auto"
    assert "mode 'auto'" in err.message


def test_it_classifies_the_wait_a_moment_variant_as_rate_limited():
    assert http(429, "http__rate_limited_wait.json").kind is UpstreamKind.RATE_LIMITED


def test_it_takes_the_cooldown_from_retry_after_or_wait_time_seconds():
    assert http(429, "http__rate_limited.json", headers={"Retry-After": "120"}).cooldown_seconds == 120
    err = classify_http(status=429, body=b'{"code":8,"message":"Too many requests","waitTimeSeconds":3600}',
                        content_type=JSON)
    assert err.cooldown_seconds == 3600
    assert http(429, "http__rate_limited.json").cooldown_seconds is None


def test_it_classifies_usage_limit_wording_as_quota_exhausted():
    err = http(429, "http__usage_limit.json")
    assert err.kind is UpstreamKind.QUOTA_EXHAUSTED and err.status == 429 and err.retry_elsewhere
    assert err.fail_reason == "rate_limited"


def test_it_lets_a_non_limit_wke_tag_override_code_8():
    err = http(429, "http__locked.json")
    assert err.kind is UpstreamKind.UPSTREAM_OTHER and err.status == 502


def test_it_classifies_a_rejected_upload_as_bad_request_with_the_upstream_message():
    err = http(400, "http__upload_rejected.json")
    assert err.kind is UpstreamKind.BAD_REQUEST
    assert (err.status, err.type) == (400, "invalid_request_error")
    assert "reference rejected" in err.message and err.retry_elsewhere is False


def test_it_classifies_model_not_found_as_not_found():
    err = http(404, "http__model_not_found.json")
    assert err.kind is UpstreamKind.NOT_FOUND and err.status == 502 and "Model not found" in err.message


def test_it_classifies_a_503_as_upstream_5xx_retryable_by_default():
    err = http(503, "http__unavailable.json")
    assert err.kind is UpstreamKind.UPSTREAM_5XX
    assert (err.status, err.code) == (502, "upstream_unavailable")
    assert err.retry_elsewhere and err.health_factor == 0.75


def test_it_retries_5xx_only_for_statuses_in_retry_on_codes():
    assert http(500, "http__unavailable.json").retry_elsewhere is False
    assert http(500, "http__unavailable.json", retry_on_codes={500, 503}).retry_elsewhere is True
    assert http(503, "http__unavailable.json", retry_on_codes=()).retry_elsewhere is False


def test_it_classifies_an_nginx_html_502_as_upstream_5xx_not_cloudflare():
    err = http(502, "http__bad_gateway.html", HTML)
    assert err.kind is UpstreamKind.UPSTREAM_5XX and err.detail == "HTML page '502 Bad Gateway'"


def test_it_classifies_the_imagine_websocket_error_frame_as_rate_limited():
    import orjson

    err = classify_ws_error(orjson.loads(body("ws__rate_limit.json")))
    assert err.kind is UpstreamKind.RATE_LIMITED and err.endpoint == "/ws/imagine/listen"
    assert "Image rate limit exceeded" in err.detail


# ------------------------------------------------------------------------- §11.3 procedure order


def test_it_checks_credential_markers_before_the_plain_401_rule():
    assert http(401, "http__invalid_session.json").kind is UpstreamKind.AUTH_INVALID
    plain = classify_http(status=401, body=b'{"error":{"code":16,"message":"unauthenticated"}}', content_type=JSON)
    assert plain.kind is UpstreamKind.AUTH_SUSPECT
    assert plain.account_action == "penalize" and plain.health_factor == 0.55 and plain.retry_elsewhere


def test_it_ignores_credential_markers_outside_400_401_403():
    err = classify_http(status=500, body=b'{"error":{"message":"token expired somewhere"}}', content_type=JSON)
    assert err.kind is UpstreamKind.UPSTREAM_5XX


def test_it_classifies_other_403s_as_forbidden_other():
    err = http(403, "http__forbidden_other.json")
    assert err.kind is UpstreamKind.FORBIDDEN_OTHER
    assert err.retry_elsewhere is False and err.health_factor == 0.25 and err.status == 502


def test_it_classifies_other_statuses_as_upstream_other():
    err = classify_http(status=409, body=b'{"error":{"message":"conflict"}}', content_type=JSON)
    assert err.kind is UpstreamKind.UPSTREAM_OTHER and err.status == 502


def test_it_still_classifies_a_truncated_json_body_by_its_marker():
    err = http(401, "http__truncated_invalid_session.json")
    assert err.kind is UpstreamKind.AUTH_INVALID


def test_it_classifies_an_unusable_200_body_as_protocol_and_a_200_challenge_as_cloudflare():
    err = classify_http(status=200, body=b"<html><body>hello</body></html>", content_type="text/html", endpoint=CHAT)
    assert err.kind is UpstreamKind.PROTOCOL and "unexpected body" in err.message
    assert classify_http(status=200, body=body("http__cloudflare.html"), content_type=HTML).kind is UpstreamKind.CLOUDFLARE


def test_it_classifies_an_empty_error_body_without_crashing():
    err = classify_http(status=502, body=b"", endpoint=CHAT)
    assert err.kind is UpstreamKind.UPSTREAM_5XX and "empty body" in err.detail


def test_it_never_puts_a_token_shaped_string_into_the_message_or_detail():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlX2hlcmU"
    err = classify_http(status=400, body=('{"error":{"message":"bad cookie sso=' + jwt + '"}}').encode(),
                        content_type=JSON)
    assert jwt not in err.message and jwt not in err.detail and "[redacted]" in err.detail


def test_it_caps_the_detail_length():
    err = classify_http(status=400, body=('{"error":{"message":"' + "x" * 5000 + '"}}').encode(), content_type=JSON)
    assert len(err.detail) <= 300


# -------------------------------------------------------------------------------- in-band forms


def test_it_classifies_the_whole_line_in_band_error():
    err = classify_inband({"error": {"code": 8, "message": "Too many requests", "details": []}}, endpoint=CHAT)
    assert err.kind is UpstreamKind.RATE_LIMITED and err.upstream_status is None and err.endpoint == CHAT


def test_it_classifies_the_response_level_usage_limit_as_quota_exhausted():
    err = classify_inband({"result": {"response": {"error": {
        "message": "You've reached your usage limit. Please try again later."}}}}, mode="fast")
    assert err.kind is UpstreamKind.QUOTA_EXHAUSTED and err.mode == "fast"


def test_it_classifies_terminal_stream_errors():
    line = {"result": {"response": {"modelResponse": {"message": "x", "streamErrors": [
        {"code": 8, "message": "Too many requests"}]}}}}
    assert classify_inband(line).kind is UpstreamKind.RATE_LIMITED


def test_it_classifies_a_response_level_code_7_as_anti_bot():
    err = classify_inband({"result": {"response": {"error": {"code": 7, "message": "denied"}}}})
    assert err.kind is UpstreamKind.ANTI_BOT


def test_it_classifies_a_whole_line_anti_bot_message_as_anti_bot():
    err = classify_inband({"error": {"code": 7, "message": "Request rejected by anti-bot rules."}})
    assert err.kind is UpstreamKind.ANTI_BOT and err.retry_elsewhere is False


def test_it_classifies_in_band_code_16_with_and_without_marker():
    marker = classify_inband({"error": {"code": 16, "message": "Failed to look up session ID."}})
    assert marker.kind is UpstreamKind.AUTH_INVALID
    plain = classify_inband({"error": {"code": 16, "message": "unauthenticated"}})
    assert plain.kind is UpstreamKind.AUTH_SUSPECT


def test_it_classifies_in_band_moderation_unavailable_and_unknown_errors():
    assert classify_inband({"error": {"code": "content-moderated", "message": "rejected"}}).kind is UpstreamKind.MODERATED
    unavailable = classify_inband({"error": {"code": 14, "message": "unavailable"}})
    assert unavailable.kind is UpstreamKind.UPSTREAM_5XX and unavailable.retry_elsewhere
    assert classify_inband({"error": {"message": "something odd"}}).kind is UpstreamKind.UPSTREAM_OTHER


def test_it_accepts_a_bare_error_dict_and_a_string_error():
    assert classify_inband({"code": 8, "message": "Too many requests"}).kind is UpstreamKind.RATE_LIMITED
    assert classify_inband({"error": "rate limit hit"}).kind is UpstreamKind.RATE_LIMITED


# ---------------------------------------------------------------------------- transport failures


@pytest.mark.parametrize("exc", [
    httpx2.ConnectTimeout("connect timed out"),
    httpx2.ReadTimeout("read timed out"),
    httpx2.PoolTimeout("pool"),
    asyncio.TimeoutError(),
    TimeoutError("deadline"),
])
def test_it_classifies_timeouts_as_timeout_504(exc):
    err = classify_transport(exc, endpoint=CHAT)
    assert err.kind is UpstreamKind.TIMEOUT
    assert (err.status, err.code) == (504, "upstream_timeout")
    assert err.retry_elsewhere and err.health_factor == 0.75 and CHAT in err.message


@pytest.mark.parametrize("exc", [
    httpx2.ConnectError("[Errno 111] Connection refused"),
    httpx2.ReadError("Connection reset by peer"),
    httpx2.RemoteProtocolError("peer closed connection without sending complete message body"),
    httpx2.ProxyError("407 Proxy Authentication Required"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError("Network is unreachable"),
    ConnectionClosedError(Close(1011, "internal error"), None),
])
def test_it_classifies_connection_failures_as_transport_502(exc):
    err = classify_transport(exc, endpoint=CHAT)
    assert err.kind is UpstreamKind.TRANSPORT
    assert (err.status, err.code) == (502, "upstream_connection_error") and err.retry_elsewhere


def test_it_names_the_proxy_when_the_proxy_failed():
    assert "proxy" in classify_transport(httpx2.ProxyError("bad gateway")).message


def test_it_classifies_a_websocket_closed_normally_before_the_result_as_truncated():
    err = classify_transport(ConnectionClosedOK(Close(1000, ""), None), endpoint="/ws/imagine/listen")
    assert err.kind is UpstreamKind.TRUNCATED


def test_it_classifies_an_undecodable_body_as_protocol():
    assert classify_transport(httpx2.DecodingError("bad gzip")).kind is UpstreamKind.PROTOCOL


def test_it_classifies_an_unknown_exception_instead_of_letting_it_escape():
    err = classify_transport(RuntimeError("weird"), endpoint=CHAT)
    assert isinstance(err, UpstreamError) and err.kind is UpstreamKind.UPSTREAM_OTHER and err.status == 502


def test_it_passes_an_already_classified_error_through():
    original = http(429, "http__rate_limited.json")
    assert classify_transport(original) is original


@pytest.mark.parametrize(("status", "payload", "ctype", "kind"), [
    (401, b"", "", UpstreamKind.AUTH_SUSPECT),
    (403, b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>", HTML, UpstreamKind.CLOUDFLARE),
    (429, b"", "", UpstreamKind.RATE_LIMITED),
])
def test_it_classifies_a_refused_websocket_handshake(status, payload, ctype, kind):
    assert classify_ws_handshake(status, payload, content_type=ctype).kind is kind
    response = Response(status, "refused", Headers({"Content-Type": ctype} if ctype else {}), payload)
    err = classify_transport(InvalidStatus(response), endpoint="/ws/imagine/listen")
    assert err.kind is kind and err.endpoint == "/ws/imagine/listen"


def test_it_classifies_websocket_error_frames_by_their_code():
    assert classify_ws_error({"type": "error", "err_code": "content_moderated", "err_msg": "blocked"}).kind \
        is UpstreamKind.MODERATED
    assert classify_ws_error({"type": "error", "err_code": "unauthenticated", "err_msg": "x"}).kind \
        is UpstreamKind.AUTH_INVALID
    other = classify_ws_error({"type": "error", "err_code": "internal", "err_msg": "boom"})
    assert other.kind is UpstreamKind.UPSTREAM_OTHER and other.detail == "internal boom"


# ----------------------------------------------------------------------------- §11.4 reaction matrix


@pytest.mark.parametrize(("kind", "retry", "action", "health", "status", "code"), [
    (UpstreamKind.RATE_LIMITED, True, "penalize", 0.45, 429, "rate_limit_exceeded"),
    (UpstreamKind.QUOTA_EXHAUSTED, True, "penalize", 0.45, 429, "rate_limit_exceeded"),
    (UpstreamKind.AUTH_INVALID, True, "expire", None, 502, "upstream_auth_invalid"),
    (UpstreamKind.AUTH_SUSPECT, True, "penalize", 0.55, 502, "upstream_auth_invalid"),
    (UpstreamKind.BLOCKED, True, "disable", None, 502, "upstream_account_blocked"),
    (UpstreamKind.ANTI_BOT, False, "penalize", None, 502, "upstream_anti_bot"),
    (UpstreamKind.CLOUDFLARE, False, "penalize", None, 502, "upstream_cloudflare_challenge"),
    (UpstreamKind.MODERATED, False, "none", None, 400, "content_policy_violation"),
    (UpstreamKind.FORBIDDEN_OTHER, False, "penalize", 0.25, 502, "upstream_forbidden"),
    (UpstreamKind.BAD_REQUEST, False, "none", None, 400, "upstream_bad_request"),
    (UpstreamKind.UPSTREAM_5XX, False, "penalize", 0.75, 502, "upstream_unavailable"),
    (UpstreamKind.TRANSPORT, True, "penalize", 0.75, 502, "upstream_connection_error"),
    (UpstreamKind.TIMEOUT, True, "penalize", 0.75, 504, "upstream_timeout"),
    (UpstreamKind.TRUNCATED, True, "penalize", None, 502, "upstream_protocol_error"),
    (UpstreamKind.PROTOCOL, True, "penalize", None, 502, "upstream_protocol_error"),
])
def test_it_applies_the_reaction_matrix_defaults_per_kind(kind, retry, action, health, status, code):
    err = UpstreamError("x", kind=kind)
    assert (err.retry_elsewhere, err.account_action, err.health_factor, err.status, err.code) == (
        retry, action, health, status, code)
    assert err.is_operator_problem is (kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE))


def test_it_keeps_explicit_constructor_arguments_compatible():
    err = UpstreamError("m", kind=UpstreamKind.UPSTREAM_OTHER, upstream_status=418, retry_elsewhere=True,
                        endpoint="/x", mode="fast", detail="d", status=503, type="t", code="c")
    assert (err.status, err.type, err.code, err.retry_elsewhere, err.upstream_status) == (503, "t", "c", True, 418)


def test_it_renders_client_envelopes_for_classified_errors():
    anti = http(403, "http__antibot.json")
    assert anti.openai_body()["error"]["code"] == "upstream_anti_bot"
    assert anti.anthropic_body() == {"type": "error", "error": {"type": "api_error", "message": anti.message}}
    limited = http(429, "http__rate_limited.json")
    assert limited.openai_body()["error"]["type"] == "rate_limit_exceeded"
    assert limited.anthropic_body()["error"]["type"] == "rate_limit_error"
    moderated = http(403, "http__moderated.json")
    assert moderated.anthropic_body()["error"]["type"] == "invalid_request_error"


def test_it_classifies_an_http_status_error_by_its_response():
    request = httpx2.Request("POST", "https://grok.test/rest/app-chat/conversations/new")
    response = httpx2.Response(403, headers={"content-type": JSON}, content=body("http__antibot.json"), request=request)
    err = classify_transport(httpx2.HTTPStatusError("403", request=request, response=response))
    assert err.kind is UpstreamKind.ANTI_BOT and err.endpoint == CHAT and err.upstream_status == 403


def test_it_reads_a_json_body_mislabelled_as_html_as_json():
    err = classify_http(status=403, body=body("http__antibot.json"), content_type="text/html", endpoint=CHAT)
    assert err.kind is UpstreamKind.ANTI_BOT
