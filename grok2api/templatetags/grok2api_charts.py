"""`{% pool_capacity as capacity %}` and `{% keys_budgets as budgets %}` for the admin index (issue 20):
chart specs from gateway/charts.py, embedded with json_script and drawn by static/grok2api/admin-charts.js."""
from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def pool_capacity() -> dict:
    from gateway.charts import pool_capacity as capacity

    return capacity()


@register.simple_tag
def keys_budgets() -> dict:
    from gateway.charts import keys_budget_chart

    return keys_budget_chart()
