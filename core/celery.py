"""The Celery application: broker from settings (Redis or kombu's filesystem transport), and the one
way the apps queue a job."""
import logging
import os
import threading
from collections.abc import Callable

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

app = Celery("grok2api")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


def task_enqueue(*, name: str, args: tuple, run_eager: Callable[[], None], what: str) -> None:
    """Queue the task registered as `name`. In eager mode (CELERY_TASK_ALWAYS_EAGER: no worker) run
    `run_eager` on a daemon thread instead, so the request that queued the job still answers at
    once. By name, so the queuing module need not import the tasks module that wraps it."""
    from django.conf import settings

    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        threading.Thread(target=_run_guarded, args=(run_eager, what), name=what[-24:], daemon=True).start()
        return
    app.send_task(name, args=args)


def _run_guarded(run: Callable[[], None], what: str) -> None:
    from django.db import close_old_connections, connection

    try:
        run()
    except Exception:
        log.exception("%s crashed", what)
    finally:
        close_old_connections()
        connection.close()
