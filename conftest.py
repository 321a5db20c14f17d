"""Shared test fixtures. Tests run against real PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set."""
import os

# Unit tests reload snapshots inline (in the test's own transaction); no background poller thread.
os.environ.setdefault("SNAPSHOT_POLLER", "0")

pytest_plugins = [
    "grok2api.testing.fixtures",
    "grokweb.simulator.fixtures",
]
