from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Media requests end in media/ (below the API); their usage rows are written by the API's
        # ledger, connected here so that media never imports the gateway.
        from gateway.usage import media_usage_record
        from media.common import media_request_finished

        media_request_finished.connect(media_usage_record, dispatch_uid="gateway.usage.media_usage_record")
