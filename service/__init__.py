"""The HTTP service: ``create_app(engine, settings)`` (contract §4)."""

from __future__ import annotations

from .app import Settings as Settings
from .app import create_app as create_app

__all__ = ["Settings", "create_app"]
