"""The web service: `create_app(settings)` builds it."""

from copines.api.app import create_app

__all__ = ["create_app"]
