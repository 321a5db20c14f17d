"""`{% pool_capacity as capacity %}` and `{% keys_budgets as budgets %}` for the admin index, and
`{% account_charts original as g2a_charts %}` for an account's change page (issue 20): chart specs
from gateway/charts.py, embedded with json_script and drawn by static/grok2api/admin-charts.js.
A template tag of the wiring layer, because the charts read the gateway's usage ledger, which the
accounts app (below the gateway) must not import."""
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


@register.simple_tag
def account_charts(account) -> dict | None:
    if account is None or not account.pk:
        return None
    from gateway.charts import account_charts as charts

    return charts(account=account)
