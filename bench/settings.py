"""The product's settings, plus the hand-rolled baseline's URLs (bench only)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
