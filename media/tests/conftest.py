"""Media unit tests run services in-process: collect their usage-ledger entries in memory instead of
starting gateway/usage.py's background flusher thread (it would outlive the test's database)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def ledger(monkeypatch):
    entries: list = []
    monkeypatch.setattr("gateway.usage.usage_record", lambda *, entry: entries.append(entry))
    return entries
