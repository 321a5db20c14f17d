"""POST/GET /v1/videos end to end: the official `openai` SDK against a real `serve` process (video jobs
run in-process: CELERY_TASK_ALWAYS_EAGER) and the simulator on a real socket (docs/upstream-protocol.md §7, §12.7)."""
from __future__ import annotations

import warnings

import httpx
import openai
import pytest

from media.models import VideoJob
from media.tests.e2e import media_gateway, menv, mp4_ok, tiny_png, wait_until  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.filterwarnings("ignore::DeprecationWarning")]
warnings.filterwarnings("ignore", category=DeprecationWarning)

MODEL = "grok-imagine-video"


def _poll(client: openai.OpenAI, video_id: str):
    def done():
        video = client.videos.retrieve(video_id)
        return video if video.status in ("completed", "failed") else None

    return wait_until(done, timeout=60, interval=0.1, what=f"video {video_id} to finish")


def test_a_video_job_is_queued_polled_to_completion_and_downloaded_as_mp4(menv):
    token = menv.account("super", "vid")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="a cat surfing", seconds="6", size="1280x720",
                               extra_body={"resolution_name": "480p", "preset": "fun"})
    assert job.id.startswith("video_") and len(job.id) == 38
    assert job.object == "video" and job.status in ("queued", "in_progress", "completed")
    assert job.seconds == "6" and job.size == "1280x720" and job.model == MODEL
    final = _poll(client, job.id)
    assert final.status == "completed", final.error
    assert final.progress == 100 and final.completed_at
    content = client.videos.download_content(job.id).read()
    mp4_ok(content)
    chats = menv.sim.requests(token=token, endpoint="chat")
    assert len(chats) == 1
    body = chats[0]["body"]
    assert body["modelName"] == "imagine-video-gen" and body["message"].endswith("--mode=extremely-crazy")
    cfg = body["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
    assert cfg["resolutionName"] == "480p" and cfg["videoLength"] == 6 and cfg["aspectRatio"] == "16:9"


def test_a_16_second_video_runs_a_10_second_segment_and_a_6_second_extension(menv):
    token = menv.account("super", "long")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="waves", seconds="16")
    final = _poll(client, job.id)
    assert final.status == "completed", final.error
    chats = [c["body"]["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
             for c in menv.sim.requests(token=token, endpoint="chat")]
    assert [c["videoLength"] for c in chats] == [10, 6]
    assert chats[1]["isVideoExtension"] is True and chats[1]["extendPostId"]
    assert abs(chats[1]["videoExtensionStartTime"] - (10 + 1 / 24)) < 1e-6
    mp4_ok(client.videos.download_content(job.id).read())
    row = VideoJob.objects.get(id=job.id)
    assert [s["seconds"] for s in row.upstream_state["segments"]] == [10, 6]


def test_an_image_to_video_job_uploads_the_reference_and_creates_an_image_post(menv, tmp_path):
    token = menv.account("super", "i2v")
    menv.ready(MODEL)
    path = tmp_path / "ref.png"
    path.write_bytes(tiny_png(16, 16))
    client = menv.openai()
    with open(path, "rb") as fh:
        job = client.videos.create(model=MODEL, prompt="animate it", input_reference=fh, seconds="6")
    final = _poll(client, job.id)
    assert final.status == "completed", final.error
    assert len(menv.sim.requests(token=token, endpoint="upload")) == 1
    posts = [r["body"] for r in menv.sim.requests(token=token, endpoint="media-post")]
    assert posts and posts[0]["mediaType"] == "MEDIA_POST_TYPE_IMAGE" and posts[0]["mediaUrl"].endswith("/content")
    cfg = menv.sim.requests(token=token, endpoint="chat")[0]["body"]["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
    assert cfg["isReferenceToVideo"] is True and cfg["imageReferences"]
    mp4_ok(client.videos.download_content(job.id).read())


def test_content_supports_range_requests(menv):
    menv.account("super", "range")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="range", seconds="6")
    assert _poll(client, job.id).status == "completed"
    url = f"/v1/videos/{job.id}/content"
    with menv.http(menv.key) as http:
        whole = http.get(url)
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "video/mp4"
        size = len(whole.content)
        part = http.get(url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 0-99/{size}"
        assert part.content == whole.content[:100]
        tail = http.get(url, headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == whole.content[-50:]
        assert tail.headers["content-range"] == f"bytes {size - 50}-{size - 1}/{size}"
        open_end = http.get(url, headers={"Range": f"bytes={size - 10}-"})
        assert open_end.status_code == 206 and open_end.content == whole.content[-10:]
        beyond = http.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"


def test_content_is_409_until_ready_and_other_keys_jobs_are_404(menv):
    from gateway.models import ApiKey
    from core.crypto import hash_api_key

    menv.key_ready()
    mine = VideoJob.objects.create(id="video_" + "a" * 32, api_key=menv.key_row, model=MODEL, prompt="p")
    other_key = ApiKey.objects.create(label="other", key_hash=hash_api_key("sk-other-key-123456"), prefix="sk-other")
    theirs = VideoJob.objects.create(id="video_" + "b" * 32, api_key=other_key, model=MODEL, prompt="p")
    with menv.http(menv.key) as http:
        r = http.get(f"/v1/videos/{mine.id}/content")
        assert r.status_code == 409 and r.json()["error"]["code"] == "video_not_ready"
        assert http.get(f"/v1/videos/{mine.id}").json()["status"] == "queued"
        assert http.get(f"/v1/videos/{theirs.id}").status_code == 404
        assert http.get(f"/v1/videos/{theirs.id}/content").status_code == 404
        assert http.get("/v1/videos/video_../../etc/passwd").status_code == 404


def test_a_moderated_video_fails_the_job_with_a_content_policy_reason(menv):
    menv.account("super", "modv", "moderate")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="no", seconds="6")
    final = _poll(client, job.id)
    assert final.status == "failed"
    assert final.error.code == "content_policy_violation" and "moderation" in final.error.message
    with pytest.raises(openai.ConflictError):
        client.videos.download_content(job.id)


def test_an_upstream_failure_marks_the_job_failed_with_the_reason(menv):
    menv.account("super", "boom", "http=502")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="fail", seconds="6")
    final = _poll(client, job.id)
    assert final.status == "failed"
    assert final.error.code and final.error.message
    assert VideoJob.objects.get(id=job.id).file_name == ""


# --------------------------------------------------------------------------- bad input


def _create(menv, data, files=None):
    with menv.http() as http:
        return http.post("/v1/videos", data={"model": MODEL, "prompt": "p", **data}, files=files)


@pytest.mark.parametrize(
    "data,files,param",
    [
        ({"seconds": "7"}, None, "seconds"),
        ({"seconds": "ten"}, None, "seconds"),
        ({"resolution_name": "1080p"}, None, "resolution_name"),
        ({"preset": "wild"}, None, "preset"),
        ({"size": "100x100"}, None, "size"),
        ({"prompt": ""}, None, "prompt"),
        ({"model": "grok-imagine-image"}, None, "model"),
        ({}, [("input_reference[]", (f"{i}.png", tiny_png(), "image/png")) for i in range(8)], "input_reference"),
        ({}, [("input_reference", ("x.png", b"not an image at all", "image/png"))], "input_reference"),
        ({"input_reference": "http://192.168.1.10/a.png"}, None, "input_reference"),
        ({"input_reference": "http://169.254.169.254/latest/meta-data"}, None, "input_reference"),
        ({"input_reference": "ftp://example.com/a.png"}, None, "input_reference"),
    ],
)
def test_bad_video_input_is_a_400_naming_the_parameter_and_creates_nothing(menv, data, files, param):
    r = _create(menv, data, files)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert not VideoJob.objects.exists()


# --------------------------------------------------------------------------- through chat

VIDEO_FORMATS = ["grok_url", "local_url", "grok_html", "local_html"]


def _video_src(text: str) -> str:
    import re

    match = re.search(r'<video controls src="([^"]+)"', text)
    return match.group(1) if match else text.strip()


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
def test_the_video_model_through_chat_renders_per_video_format(menv, fmt):
    token = menv.account("super", "chatvid")
    menv.ready(MODEL)
    client = menv.openai()

    def ask(prompt: str, **cfg) -> str:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], stream=False,
            extra_body={"video_config": {"seconds": 6, **cfg}},
        ).choices[0].message.content

    def applied():
        text = ask("probe")
        return (text.startswith("<video"), "/v1/files/video?id=" in text) == (fmt.endswith("_html"), fmt.startswith("local"))

    menv.set_config({"features.video_format": fmt, "app.app_url": menv.base}, probe=applied)
    text = ask("a rocket launch", resolution_name="480p", preset="spicy", size="720x1280")
    assert text.startswith("<video controls") == fmt.endswith("_html")
    src = _video_src(text)
    if fmt.startswith("local"):
        assert src.startswith(menv.base + "/v1/files/video?id=")
        got = httpx.get(src, timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
        mp4_ok(got.content)
        ranged = httpx.get(src, headers={"Range": "bytes=0-31"}, timeout=10)
        assert ranged.status_code == 206 and ranged.content == got.content[:32]
    else:
        assert src.startswith(menv.simulator.url + "/users/") and src.endswith(".mp4")
    body = menv.sim.requests(token=token, endpoint="chat")[-1]["body"]
    cfg = body["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
    assert body["message"].endswith("--mode=extremely-spicy-or-crazy") and cfg["aspectRatio"] == "9:16"


def test_video_progress_streams_as_reasoning(menv):
    menv.account("super", "chatvidstream")
    menv.ready(MODEL)
    stream = menv.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a river"}], stream=True, extra_body={"video_config": {"seconds": 6}},
    )
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            content += chunk.choices[0].delta.content or ""
    assert "Video: " in reasoning and "%" in reasoning
    assert ".mp4" in content


@pytest.mark.parametrize(
    "video_config,param",
    [({"seconds": 8}, "video_config.seconds"), ({"preset": "x"}, "video_config.preset"),
     ({"resolution_name": "4k"}, "video_config.resolution_name"), ({"size": "1x2"}, "video_config.size")],
)
def test_bad_video_config_through_chat_is_a_400(menv, video_config, param):
    with menv.http() as http:
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                    "video_config": video_config})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_reference_urls_are_fetched_without_credentials_when_allowlisted(menv):
    token = menv.account("super", "refurl")
    menv.ready(MODEL)
    ref = menv.simulator.foreign_url + "/__ext/img/reference.png"
    # Loopback is refused until the operator allowlists it (the simulator plays a remote host).
    assert _create(menv, {"input_reference": ref}).status_code == 400
    menv.set_config({"security.fetch_allowlist": ["localhost", "127.0.0.1"]},
                    probe=lambda: _create(menv, {"input_reference": ref, "prompt": "probe"}).status_code == 200)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="from a url", seconds="6", extra_body={"input_reference": ref})
    assert _poll(client, job.id).status == "completed"
    fetched = [f for f in menv.sim.foreign if f["path"].endswith("reference.png")]
    assert fetched and not any(f["cookie"] or f["x-statsig-id"] or f["x-xai-request-id"] for f in fetched)
    assert not menv.sim.leaks
    assert len(menv.sim.requests(token=token, endpoint="upload")) >= 1


def test_json_create_is_accepted_too_and_validated_the_same_way(menv):
    with menv.http() as http:
        bad = http.post("/v1/videos", json={"model": MODEL, "prompt": "p", "input_reference": [{"image_url": "http://10.9.8.7/a.png"}]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_reference"
        many = http.post("/v1/videos", json={"model": MODEL, "prompt": "p", "input_reference": ["data:image/png;base64,AAAA"] * 8})
        assert many.status_code == 400 and many.json()["error"]["param"] == "input_reference"
        ok = http.post("/v1/videos", json={"model": MODEL, "prompt": "p", "seconds": 10, "size": "1024x1024"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["status"] in ("queued", "in_progress", "completed", "failed") and body["seconds"] == "10" and body["size"] == "1024x1024"


def test_a_job_video_on_the_files_path_follows_the_owner_rule_of_content(menv):
    """/v1/files/video?id=<job id> used to serve any key's video to anyone, with no key at all."""
    from grok2api.testing.fixtures import TEST_GATEWAY_KEY

    menv.account("super", "owner")
    menv.ready(MODEL)
    client = menv.openai()
    job = client.videos.create(model=MODEL, prompt="a quiet harbour", seconds="6")
    assert _poll(client, job.id).status == "completed"
    content = client.videos.download_content(job.id).read()
    path = f"{menv.base}/v1/files/video?id={job.id}"
    no_key = httpx.get(path, timeout=10)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    other = httpx.get(path, headers={"Authorization": f"Bearer {TEST_GATEWAY_KEY}"}, timeout=10)
    assert other.status_code == 404 and other.json()["error"]["param"] == "id"
    assert httpx.get(f"{menv.base}/v1/videos/{job.id}/content", headers={"Authorization": f"Bearer {TEST_GATEWAY_KEY}"},
                     timeout=10).status_code == 404  # the same answer as the job's own route
    own = httpx.get(path, headers={"Authorization": f"Bearer {menv.key}"}, timeout=10)
    assert own.status_code == 200 and own.headers["content-type"] == "video/mp4" and own.content == content
    ranged = httpx.get(path, headers={"Authorization": f"Bearer {menv.key}", "Range": "bytes=0-15"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == content[:16]
