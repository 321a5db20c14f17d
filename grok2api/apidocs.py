"""/v1/docs: Swagger UI served from the gateway's own static files, under the site's CSP.

django-ninja's own Swagger page either loads swagger-ui from a public CDN (unpinned, no integrity)
or, with "ninja" in INSTALLED_APPS, the copy bundled in the ninja wheel with an init script of its
own. We serve the pinned swagger-ui-dist that `make vendor` puts into static/vendor/ (exact version
in webui/frontend/package.json) with our init script (static/grok2api/swagger-init.js).

/v1/* skips the page middlewares (grok2api/pagemiddleware.py), so django-csp's
middleware never sees this page: the header is built here with django-csp's `build_policy`, from
the same CONTENT_SECURITY_POLICY setting as every other page.
"""
from __future__ import annotations

from typing import Any

from csp.constants import HEADER
from csp.utils import build_policy
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja.openapi.docs import DocsBase


class LocalSwagger(DocsBase):
    template = "api/docs.html"

    def render_page(self, request: HttpRequest, api: Any, **kwargs: Any) -> HttpResponse:
        context = {"api": api, "swagger_settings": {"url": self.get_openapi_url(api, kwargs)}}
        response = render(request, self.template, context)
        response[HEADER] = build_policy()
        return response
