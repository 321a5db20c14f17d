"""Model fields shared by the apps."""
from __future__ import annotations

from django.db import models

from core import crypto


class EncryptedTextField(models.TextField):
    """A text column whose value is Fernet-encrypted in the database and plain in Python."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)
