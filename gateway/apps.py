from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from gateway.attachments import attachment_max_bytes_set

        # The translators are pure (no Django): hand them the deployment's cap once.
        attachment_max_bytes_set(max_bytes=settings.MAX_ATTACHMENT_BYTES)
