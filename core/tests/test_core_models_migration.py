"""RuntimeConfig, VersionStamp, OperatorAlert and Proxy move from `accounts` to the core without
moving a row: a database at main's last migrations, with rows in those tables, migrates to the
new layout and every row is read back through the core's models — and back again.

Runs on whichever database the suite uses (PostgreSQL with DATABASE_URL set, else SQLite).
"""
from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.models import OperatorAlert, Proxy, RuntimeConfig, VersionStamp

BEFORE = [("accounts", "0003_tierchange"), ("grok2api", "0001_initial")]
AFTER = [("accounts", "0004_core_models_to_grok2api"), ("grok2api", "0002_core_models_from_accounts")]


def migrate(targets):
    """Migrate accounts and grok2api to `targets`; the models of every app in that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    moved = {app for app, _ in targets}
    nodes = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in moved] + targets
    return executor.loader.project_state(nodes).apps


@pytest.mark.django_db(transaction=True)
def test_rows_survive_the_move_to_the_core_and_back():
    old = migrate(BEFORE)
    OldProxy = old.get_model("accounts", "Proxy")
    OldConfig = old.get_model("accounts", "RuntimeConfig")
    OldStamp = old.get_model("accounts", "VersionStamp")
    OldAlert = old.get_model("accounts", "OperatorAlert")
    OldContentType = old.get_model("contenttypes", "ContentType")
    OldPermission = old.get_model("auth", "Permission")

    OldProxy.objects.all().delete()
    OldConfig.objects.all().delete()
    OldStamp.objects.all().delete()
    OldAlert.objects.all().delete()
    proxy = OldProxy.objects.create(url="http://10.1.2.3:3128", label="office", fail_count=4)
    OldConfig.objects.create(pk=1, data={"app": {"api_key": "enc-or-not"}})
    OldStamp.objects.create(name="layers-test", version=41)
    alert = OldAlert.objects.create(kind="anti_bot", endpoint="/rest/app-chat", message="refused", count=3)
    OldContentType.objects.filter(app_label="grok2api", model="proxy").delete()
    proxy_type, _ = OldContentType.objects.get_or_create(app_label="accounts", model="proxy")
    permission, _ = OldPermission.objects.get_or_create(content_type=proxy_type, codename="view_proxy",
                                                        defaults={"name": "Can view proxy"})

    migrate(AFTER)
    ContentType.objects.clear_cache()

    moved = Proxy.objects.get(pk=proxy.pk)
    assert (moved.label, moved.fail_count) == ("office", 4)
    assert moved.url == "http://10.1.2.3:3128"  # still decrypts: the same column, the same field
    assert RuntimeConfig.objects.get(pk=1).data == {"app": {"api_key": "enc-or-not"}}
    assert VersionStamp.objects.get(name="layers-test").version == 41
    assert OperatorAlert.objects.get(pk=alert.pk).count == 3
    # the permission follows its model to the new app label
    moved_type = ContentType.objects.get(pk=proxy_type.pk)
    assert (moved_type.app_label, moved_type.model) == ("grok2api", "proxy")
    assert moved_type.permission_set.filter(pk=permission.pk).exists()
    assert not ContentType.objects.filter(app_label="accounts", model="proxy").exists()

    back = migrate(BEFORE)  # and the move reverses cleanly
    ContentType.objects.clear_cache()
    assert back.get_model("accounts", "Proxy").objects.get(pk=proxy.pk).label == "office"
    assert ContentType.objects.get(pk=proxy_type.pk).app_label == "accounts"
    migrate(AFTER)
    ContentType.objects.clear_cache()
