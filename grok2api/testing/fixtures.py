"""Pytest fixtures for the gateway under test: a real `serve` process on a real socket (issue 2/5)."""
