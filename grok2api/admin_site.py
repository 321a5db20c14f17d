"""The admin site of the gateway (Django's AdminSite with three changes).

- "View site" leads to the web chat page when `app.webui_enabled` is on, and is hidden when it is
  off: the gateway has no page at "/" (Django's default link was a 404). Read per request, so an
  edit of the runtime config shows without a restart.
- No navigation sidebar: it repeats the index and took 300 px from the accounts and usage tables,
  which then no longer fitted a 1400 px window.
- Its own title instead of "Django administration".
"""
from __future__ import annotations

from django.contrib import admin
from django.urls import reverse


class GatewayAdminSite(admin.AdminSite):
    site_header = "grok2api administration"
    site_title = "grok2api admin"
    enable_nav_sidebar = False

    def each_context(self, request):
        from core.config import config

        context = super().each_context(request)
        context["site_url"] = reverse("webui:chat") if config().get("app.webui_enabled") else None
        return context

