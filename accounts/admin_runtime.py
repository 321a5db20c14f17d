"""Admin for runtime config, proxies and operator alerts (issue 2)."""
