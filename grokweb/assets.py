"""Upload and asset calls of the Grok Web client (E3–E7, docs/upstream-protocol.md §8): JSON and
multipart uploads, listing, deletion and capped downloads, each bounded by its
`batch.asset_*_concurrency` semaphore per event loop.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

from grokweb.classify import UpstreamError, UpstreamKind, classify_http
from grokweb.core import ERROR_BODY_CAP, GrokCore, read_capped
from grokweb.egress import egress_report
from grokweb.transport import RedirectRefused, quote_path, send_with_redirects, upstream_client

EP_UPLOAD = "/rest/app-chat/upload-file"
EP_UPLOAD_MULTIPART = "/http/upload-file-v2/direct"
EP_ASSETS = "/rest/assets"
EP_ASSET_DELETE = "/rest/assets-metadata/{asset_id}"
DOWNLOAD_TOTAL_FACTOR = 10  # total download cap = asset.download_timeout (idle gap) × this


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uploaded:
    file_id: str
    file_uri: str


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class AssetInfo:
    asset_id: str
    name: str = ""
    path: str = ""
    content_type: str = ""
    size: int | None = None
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class AssetPage:
    assets: list[AssetInfo]
    next_cursor: str | None = None
    raw: dict = field(default_factory=dict)


_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary()
)


def _semaphore(name: str, size: int) -> asyncio.Semaphore:
    """A process-wide (per event loop) concurrency limit, e.g. batch.asset_upload_concurrency."""
    loop = asyncio.get_running_loop()
    per_loop = _semaphores.setdefault(loop, {})
    sem = per_loop.get(name)
    if sem is None:
        sem = per_loop[name] = asyncio.Semaphore(max(1, int(size)))
    return sem


class AssetCalls(GrokCore):
    """Uploads and assets: E3–E7."""

    # -- uploads and assets (E3–E7) ------------------------------------------------------------

    async def upload_file(self, *, name: str, mime: str, data: bytes) -> Uploaded:
        """E3 JSON upload (base64 content). Limited by `batch.asset_upload_concurrency`."""
        body = {"fileName": name, "fileMimeType": mime, "content": base64.b64encode(data).decode("ascii")}
        async with _semaphore("upload", self.cfg.get("batch.asset_upload_concurrency", 10)):
            result = await self._rest("POST", EP_UPLOAD, endpoint=EP_UPLOAD, json_body=body,
                                      timeout=self._timeout("asset.upload_timeout"))
        file_id = str((result or {}).get("fileMetadataId") or (result or {}).get("fileId") or "") if isinstance(result, dict) else ""
        if not file_id:
            raise self._unexpected(result, endpoint=EP_UPLOAD, what="no fileMetadataId in the upload answer")
        file_uri = str(result.get("fileUri") or "")
        if not file_uri and self.user_id:
            file_uri = f"users/{self.user_id}/{file_id}/content"
        self._learn_user_id(file_uri)
        return Uploaded(file_id=file_id, file_uri=file_uri)

    async def upload_file_multipart(
        self, *, name: str, mime: str, data: bytes, file_source: str = "IMAGINE_SELF_UPLOAD_FILE_SOURCE",
        fallback: bool = True,
    ) -> Uploaded:
        """E4 multipart upload (no x-xai-request-id, Referer /imagine); falls back to E3 when the
        answer carries no file id yet (asynchronous completion) and `fallback` is true."""
        async with _semaphore("upload", self.cfg.get("batch.asset_upload_concurrency", 10)):
            result = await self._rest(
                "POST", EP_UPLOAD_MULTIPART, endpoint=EP_UPLOAD_MULTIPART,
                files={"file": (name, data, mime)}, data={"file_source": file_source} if file_source else None,
                referer_path="/imagine", timeout=self._timeout("asset.upload_timeout"), request_id=False,
            )
        if not isinstance(result, dict):
            raise self._unexpected(result, endpoint=EP_UPLOAD_MULTIPART, what="upload answer is not an object")
        terminal = result.get("terminalError")
        if terminal:
            message = terminal.get("message") if isinstance(terminal, dict) else str(terminal)
            raise classify_http(status=400, body=orjson.dumps({"error": {"message": message or "upload rejected"}}),
                                content_type="application/json", endpoint=EP_UPLOAD_MULTIPART)
        meta = result.get("fileMetadata") if isinstance(result.get("fileMetadata"), dict) else {}
        file_id = str(meta.get("fileMetadataId") or meta.get("fileId") or "")
        if not file_id:
            if fallback:
                return await self.upload_file(name=name, mime=mime, data=data)
            raise self._unexpected(result, endpoint=EP_UPLOAD_MULTIPART, what="upload accepted without a file id")
        file_uri = str(meta.get("fileUri") or "")
        self._learn_user_id(file_uri)
        return Uploaded(file_id=file_id, file_uri=file_uri)

    async def list_assets(self, *, cursor: str | None = None, limit: int | None = None) -> AssetPage:
        """E5; cursor/limit passed through when given."""
        params: dict[str, Any] = {}
        if cursor:
            params["cursor"] = cursor
        if limit:
            params["limit"] = int(limit)
        async with _semaphore("list", self.cfg.get("batch.asset_list_concurrency", 50)):
            data = await self._rest("GET", EP_ASSETS, endpoint=EP_ASSETS, params=params or None,
                                    referer_path="/files", timeout=self._timeout("asset.list_timeout"))
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_ASSETS, what="asset list is not an object")
        items = data.get("assets")
        if items is None:
            items = data.get("items")
        if not isinstance(items, list):
            raise self._unexpected(data, endpoint=EP_ASSETS, what="no assets array")
        assets = []
        for item in items:
            if not isinstance(item, dict):
                continue
            asset_id = str(item.get("assetId") or item.get("id") or "")
            if not asset_id:
                continue
            size = item.get("fileSize")
            try:
                size = int(size) if size is not None else None
            except (TypeError, ValueError):
                size = None
            path = str(item.get("filePath") or item.get("fileUri") or "")
            self._learn_user_id(path)
            assets.append(AssetInfo(
                asset_id=asset_id,
                name=str(item.get("fileName") or item.get("name") or ""),
                path=path,
                content_type=str(item.get("contentType") or item.get("mimeType") or ""),
                size=size,
                created_at=str(item.get("createdAt") or item.get("createTime") or ""),
            ))
        next_cursor = data.get("nextCursor") or data.get("nextPageToken") or data.get("cursor") or None
        return AssetPage(assets=assets, next_cursor=str(next_cursor) if next_cursor else None, raw=data)

    async def delete_asset(self, *, asset_id: str) -> None:
        """E6 (200 or 204, empty or JSON body)."""
        path = EP_ASSET_DELETE.format(asset_id=quote_path(asset_id))
        async with _semaphore("delete", self.cfg.get("batch.asset_delete_concurrency", 50)):
            await self._rest("DELETE", path, endpoint=EP_ASSET_DELETE, referer_path="/files",
                             timeout=self._timeout("asset.delete_timeout"), allow_empty=True)

    async def download_asset(self, *, url: str, dest: Path, max_bytes: int, binary: bool = True) -> Downloaded:
        """E7: stream a file to `dest` (temp file in the same folder, then an atomic rename).

        Relative `users/…` paths are joined with the assets base. Credentialed origins get the
        navigation header set and the cookie; anything else (public Imagine URLs) is fetched
        without credentials. Rejects empty bodies, bodies over `max_bytes`, and — for binary
        media — bodies starting with `<` or `{` (an HTML/JSON error page served with 200).
        """
        absolute = self.asset_url(url)
        if not absolute.startswith(("http://", "https://")):
            raise classify_http(status=400, body=b"not an http(s) asset URL", endpoint="assets")
        endpoint = urlsplit(absolute).path or "/"
        credentialed = self.is_credentialed(absolute)
        headers = self.navigation_headers(url=absolute) if credentialed else self.public_headers(accept="*/*")
        idle = self._timeout("asset.download_timeout")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    client = await upstream_client(egress=self.egress, cfg=self.cfg)
                    request = client.build_request("GET", absolute, headers=headers, timeout=httpx2.Timeout(idle))
                    async with asyncio.timeout(idle * DOWNLOAD_TOTAL_FACTOR):
                        response, _cred = await send_with_redirects(client, request, credentialed=self.is_credentialed)
                        try:
                            if response.status_code != 200:
                                body = await read_capped(response, ERROR_BODY_CAP)
                                egress_report(egress=self.egress, ok=True)
                                raise self._http_failed(status=response.status_code, body=body, response=response,
                                                        endpoint=endpoint)
                            content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                            head = b""
                            async for chunk in response.aiter_bytes():
                                if not chunk:
                                    continue
                                if binary and not head.strip():
                                    head += chunk[:ERROR_BODY_CAP]
                                    if head.lstrip()[:1] in (b"<", b"{"):
                                        # an HTML/JSON error page served as the file: classify it
                                        raise self._http_failed(status=200, body=head, response=response,
                                                                endpoint=endpoint)
                                size += len(chunk)
                                if size > max_bytes:
                                    raise UpstreamError(
                                        f"The upstream file at {endpoint} is larger than the {max_bytes}-byte limit.",
                                        kind=UpstreamKind.PROTOCOL, endpoint=endpoint, detail="file too large",
                                    )
                                fh.write(chunk)
                        finally:
                            await response.aclose()
                except UpstreamError:
                    raise
                except RedirectRefused as exc:
                    raise classify_http(status=exc.status or 302, body=str(exc), endpoint=endpoint) from exc
                except (httpx2.HTTPError, OSError, TimeoutError) as exc:
                    raise self._transport_failed(exc, endpoint) from exc
            egress_report(egress=self.egress, ok=True)
            if size == 0:
                raise classify_http(status=200, body=b"", endpoint=endpoint)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._learn_user_id(urlsplit(absolute).path)
        return Downloaded(path=dest, content_type=content_type, size=size)
