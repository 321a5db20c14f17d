"""gateway/services.py and gateway/usage.py, called directly (no HTTP)."""
import pytest

from gateway import services
from gateway import usage as usage_module
from grokweb.errors import InvalidRequest, ModelNotFound, PermissionDenied
from gateway.models import ApiKey, UsageRecord
from gateway.usage import UsageEntry, usage_flush, usage_pending, usage_record


@pytest.fixture(autouse=True)
def _no_flusher_thread(monkeypatch):
    # The ledger is flushed explicitly here; a background writer thread would race the test DB.
    monkeypatch.setenv("USAGE_FLUSHER", "0")
    with usage_module._flush_lock:  # a flusher thread started by another test waits meanwhile
        usage_module._buffer.clear()  # entries other tests of this process left behind
        yield


@pytest.mark.django_db
def test_usage_entries_are_written_in_one_batch_only_when_flushed():
    for i in range(3):
        usage_record(entry=UsageEntry(endpoint="chat.completions", model="ledger-batch", stream=bool(i % 2),
                                      prompt_tokens=10 + i, completion_tokens=5, reasoning_tokens=1, ttft_ms=12))
    assert usage_pending() == 3
    assert not UsageRecord.objects.filter(model="ledger-batch").exists()  # nothing written on the "request path"
    assert usage_flush() == 3
    rows = list(UsageRecord.objects.filter(model="ledger-batch").order_by("prompt_tokens"))
    assert [r.prompt_tokens for r in rows] == [10, 11, 12]
    assert rows[0].endpoint == "chat.completions" and rows[0].ttft_ms == 12 and rows[1].stream is True
    assert usage_pending() == 0


@pytest.mark.django_db(transaction=True)
def test_a_usage_entry_whose_key_was_deleted_is_kept_without_the_reference():
    key = ApiKey.objects.create(label="gone", key_hash="a" * 64, prefix="sk-gone")
    usage_record(entry=UsageEntry(endpoint="messages", model="ledger-dangling", stream=False,
                                  api_key_id=key.id, api_key_label="gone", account_id=987654))
    key.delete()
    assert usage_flush() == 1
    row = UsageRecord.objects.get(model="ledger-dangling")  # a live server may write other rows meanwhile
    assert row.api_key_id is None and row.account_id is None and row.api_key_label == "gone"


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1,2]", b'"text"'])
def test_chat_parse_rejects_bodies_that_are_not_json_objects(raw):
    with pytest.raises(InvalidRequest) as info:
        services.chat_parse(family="openai", raw=raw)
    assert info.value.status == 400 and info.value.param is None


def test_model_retrieve_knows_every_registry_model_and_404s_the_rest():
    from grokweb.registry import MODELS

    for spec in MODELS:
        obj = services.model_retrieve(model_id=spec.id, principal=None)
        assert obj["id"] == spec.id and obj["object"] == "model" and obj["owned_by"] == "xai"
        assert obj["capability"] == spec.capability and obj["pools"] == list(spec.pools)
    with pytest.raises(ModelNotFound):
        services.model_retrieve(model_id="gpt-4o", principal=None)


def test_a_key_limited_to_some_models_cannot_reach_the_others():
    from gateway.auth import Principal

    limited = Principal(key_id=None, label="limited", allowed_models=("grok-4.20-fast",))
    assert services.model_retrieve(model_id="grok-4.20-fast", principal=limited)["id"] == "grok-4.20-fast"
    with pytest.raises(ModelNotFound):
        services.model_retrieve(model_id="grok-4.20-expert", principal=limited)
    with pytest.raises(PermissionDenied) as info:
        services._model_for(model_id="grok-4.20-expert", principal=limited)
    assert info.value.status == 403 and info.value.param == "model"


@pytest.mark.django_db(transaction=True)
def test_one_dangling_entry_does_not_strip_the_references_of_the_others_in_its_batch():
    keep = ApiKey.objects.create(label="kept", key_hash="b" * 64, prefix="sk-kept")
    gone = ApiKey.objects.create(label="gone", key_hash="c" * 64, prefix="sk-gone")
    usage_record(entry=UsageEntry(endpoint="messages", model="m1", stream=False, api_key_id=gone.id))
    usage_record(entry=UsageEntry(endpoint="messages", model="m2", stream=False, api_key_id=keep.id))
    gone.delete()
    assert usage_flush() == 2
    rows = {r.model: r for r in UsageRecord.objects.filter(model__in=["m1", "m2"])}
    assert rows["m1"].api_key_id is None and rows["m2"].api_key_id == keep.id
