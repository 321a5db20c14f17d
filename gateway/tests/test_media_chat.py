"""media_chat_urls: what the chat service shows instead of upstream URLs for images drawn inside an
ordinary chat (features.image_format local_* / base64), against the simulator on a real socket."""
from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from core.config import config_save
from gateway.translate.assembler import ImagePiece
from grokweb.client import GrokClient
from grokweb.events import ImageResult
from media import cache
from gateway.media_chat import media_chat_urls
from media.tests.e2e import image_ok


@pytest.mark.django_db(transaction=True)
async def test_chat_images_become_local_links_or_data_uris(sim, settings, tmp_path):
    from asgiref.sync import sync_to_async

    settings.DATA_DIR = tmp_path
    save = sync_to_async(config_save)
    await save(values={"upstream.web_base_url": sim.url, "upstream.assets_base_url": sim.url, "upstream.ws_base_url": sim.ws_url,
                       "upstream.imagine_public_base_url": sim.sim.advertised_url, "features.image_format": "local_md",
                       "app.app_url": "https://gw.example.com"})
    client = GrokClient(token="sim-basic-chaturls")
    urls = []
    async with client.chat_stream(payload=client.build_chat_payload(message="Drawing: a bird", mode="fast"), mode="fast") as events:
        async for ev in events:
            if isinstance(ev, ImageResult) and not ev.moderated:
                urls.append(ev.url)
    assert urls
    pieces = [ImagePiece(url=u, index=i) for i, u in enumerate(urls)]
    mapped = await media_chat_urls(client=client, images=pieces, videos=[])
    for url in urls:
        link = mapped[url]
        assert link.startswith("https://gw.example.com/v1/files/image?id=")
        query = parse_qs(urlsplit(link).query)
        media_id = query["id"][0]
        assert cache.media_link_valid(media_type="image", media_id=media_id, sig=query["sig"][0])
        found = cache.media_cache_path(media_type="image", media_id=media_id)
        image_ok(found.path.read_bytes())
    await save(values={"features.image_format": "base64"})
    mapped = await media_chat_urls(client=client, images=pieces[:1], videos=[])
    uri = mapped[urls[0]]
    assert uri.startswith("data:image/")
    image_ok(base64.b64decode(uri.split(",", 1)[1]))
    await save(values={"features.image_format": "grok_url"})
    assert await media_chat_urls(client=client, images=pieces, videos=[]) == {}
    await sync_to_async(_close_connection)()  # the ORM ran on asgiref's thread: leave no session open


def _close_connection() -> None:
    from django.db import connection

    connection.close()
