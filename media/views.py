"""GET /v1/files/image and /v1/files/video (filled in by the media issue)."""
from ninja import Router

router = Router()
