"""System checks: what a host project is missing or has wrong (`manage.py check`)."""

from __future__ import annotations
