"""/static/ as its own small ASGI app, in front of Django: WhiteNoise's WSGI side.

WhiteNoise's Django middleware is sync-only. In Django's middleware chain it made the async
handler adapt the whole chain to sync mode, so every request — /v1 streams included — hopped to a
thread and back. Served here instead, static files take that thread hop (asgiref's WsgiToAsgi)
and nothing else does. `StaticFiles` is WhiteNoiseMiddleware for its configuration (the WHITENOISE_*
settings, STATIC_URL, the staticfiles finders) with WhiteNoise's own WSGI entry point and file
sender put back; a path it does not know answers a plain 404.
"""
from __future__ import annotations

from asgiref.wsgi import WsgiToAsgi
from whitenoise import WhiteNoise
from whitenoise.middleware import WhiteNoiseMiddleware


def _not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Not Found"]


class StaticFiles(WhiteNoiseMiddleware):
    __call__ = WhiteNoise.__call__  # WSGI (environ, start_response), not Django's (request)
    serve = staticmethod(WhiteNoise.serve)

    def __init__(self) -> None:
        super().__init__(get_response=None)
        self.application = _not_found


def static_app():
    """(URL prefix, ASGI app) of the static files."""
    files = StaticFiles()
    return files.static_prefix, WsgiToAsgi(files)
