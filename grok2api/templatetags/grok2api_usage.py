"""`{% usage_charts as charts %}` for the admin index: requests, tokens and errors per model over the
last 24 hours, read from the hourly rollups (gateway/ledger.py), drawn by the vendored Chart.js."""
from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def usage_charts() -> dict:
    from gateway.ledger import usage_hourly_series

    return usage_hourly_series(hours=24)
