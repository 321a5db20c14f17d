"""Pytest fixtures for the simulator on a real socket (issue 3)."""
