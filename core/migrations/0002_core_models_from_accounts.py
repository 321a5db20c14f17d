"""RuntimeConfig, VersionStamp, OperatorAlert and Proxy join the core (issue 17 §4).

State only: the tables keep their names (`db_table`), so no row moves and no SQL runs. The models
leave the accounts app's state in accounts/migrations/0004, which runs after this one.
"""
import django.utils.timezone
from django.db import migrations, models

import core.fields


class Migration(migrations.Migration):

    dependencies = [
        ('grok2api', '0001_initial'),
        ('accounts', '0003_tierchange'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Proxy',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('url', core.fields.EncryptedTextField(help_text='http://, https://, socks5:// (credentials allowed), encrypted at rest')),
                        ('label', models.CharField(blank=True, default='', max_length=100)),
                        ('enabled', models.BooleanField(default=True)),
                        ('healthy', models.BooleanField(default=True)),
                        ('fail_count', models.PositiveIntegerField(default=0)),
                        ('success_count', models.PositiveIntegerField(default=0)),
                        ('last_error', models.CharField(blank=True, default='', max_length=300)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('last_fail_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={
                        'db_table': 'accounts_proxy',
                        'verbose_name_plural': 'proxies',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='RuntimeConfig',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('data', models.JSONField(blank=True, default=dict)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'accounts_runtimeconfig',
                        'verbose_name': 'runtime config',
                        'verbose_name_plural': 'runtime config',
                    },
                ),
                migrations.CreateModel(
                    name='VersionStamp',
                    fields=[
                        ('name', models.CharField(max_length=32, primary_key=True, serialize=False)),
                        ('version', models.BigIntegerField(default=0)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'accounts_versionstamp',
                    },
                ),
                migrations.CreateModel(
                    name='OperatorAlert',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('anti_bot', 'upstream anti-bot rejection'), ('cloudflare', 'Cloudflare challenge (clearance rejected)'), ('media_links', 'media links without app.app_url'), ('other', 'other')], max_length=20)),
                        ('endpoint', models.CharField(blank=True, default='', max_length=200)),
                        ('egress', models.CharField(blank=True, default='', help_text="proxy label or 'direct'", max_length=200)),
                        ('message', models.TextField()),
                        ('hint', models.TextField(blank=True, default='')),
                        ('count', models.PositiveIntegerField(default=1)),
                        ('first_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('resolved', models.BooleanField(db_index=True, default=False)),
                    ],
                    options={
                        'db_table': 'accounts_operatoralert',
                        'ordering': ['-last_at'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('resolved', False)), fields=('kind', 'endpoint', 'egress'), name='one_open_alert')],
                    },
                ),
            ],
        ),
    ]
