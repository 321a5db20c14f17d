"""Read-only account queries for admin, commands and /readyz (never on the request path)."""
from __future__ import annotations

from typing import Any

from accounts.models import Account, AccountStatus
from core.models import OperatorAlert


def accounts_export(*, include_secrets: bool = False, pool: str | None = None, include_deleted: bool = False) -> list[dict[str, Any]]:
    qs = Account.objects.all().order_by("id")
    if not include_deleted:
        qs = qs.filter(deleted_at__isnull=True)
    if pool:
        qs = qs.filter(pool=pool)
    out = []
    for a in qs:
        out.append({
            "id": a.id,
            "token": a.token if include_secrets else a.masked_token,
            "pool": a.pool,
            "pool_detected": a.pool_detected,
            "status": a.status,
            "state_reason": a.state_reason,
            "tags": a.tags,
            "note": a.note,
            "quotas": a.quotas,
            "health": round(a.health, 4),
            "use_count": a.use_count,
            "fail_count": a.fail_count,
            "last_use_at": a.last_use_at.isoformat() if a.last_use_at else None,
            "created_at": a.created_at.isoformat(),
            "deleted_at": a.deleted_at.isoformat() if a.deleted_at else None,
        })
    return out


def accounts_stats() -> dict[str, dict[str, int]]:
    """{pool: {status: count}} of non-deleted accounts."""
    out: dict[str, dict[str, int]] = {}
    for pool, status in Account.objects.filter(deleted_at__isnull=True).values_list("pool", "status"):
        out.setdefault(pool, {}).setdefault(status, 0)
        out[pool][status] += 1
    return out


def alerts_open() -> list[OperatorAlert]:
    return list(OperatorAlert.objects.filter(resolved=False).order_by("-last_at"))


def account_get(*, account_id: int) -> Account | None:
    return Account.objects.filter(id=account_id, deleted_at__isnull=True).first()


__all__ = ["accounts_export", "accounts_stats", "alerts_open", "account_get", "AccountStatus"]
