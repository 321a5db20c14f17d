"""RuntimeConfig, VersionStamp, OperatorAlert and Proxy leave the accounts app for the core.

State only (their tables keep their names; core/migrations/0002 takes them over). Their content
types move with them, so permissions and admin log entries that point at them stay attached.
"""
from django.db import migrations

MOVED = ("proxy", "runtimeconfig", "versionstamp", "operatoralert")


def content_types_move(apps, schema_editor, *, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        if ContentType.objects.using(db).filter(app_label=target, model=model).exists():
            continue  # created by an earlier post_migrate: keep it, the old one goes stale
        ContentType.objects.using(db).filter(app_label=source, model=model).update(app_label=target)


def forwards(apps, schema_editor) -> None:
    content_types_move(apps, schema_editor, source="accounts", target="grok2api")


def backwards(apps, schema_editor) -> None:
    content_types_move(apps, schema_editor, source="grok2api", target="accounts")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_tierchange'),
        ('grok2api', '0002_core_models_from_accounts'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name='OperatorAlert'),
                migrations.DeleteModel(name='Proxy'),
                migrations.DeleteModel(name='RuntimeConfig'),
                migrations.DeleteModel(name='VersionStamp'),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]
