from django.apps import AppConfig


class MediaConfig(AppConfig):
    name = "media"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from media.attachments import attachment_max_bytes_set

        # The gateway's translators are pure (no Django): hand them the deployment's cap once.
        attachment_max_bytes_set(max_bytes=settings.MAX_ATTACHMENT_BYTES)
