"""Account admin (issue 4). Runtime config / proxy / alert admin lives in admin_runtime."""
from accounts import admin_runtime  # noqa: F401
