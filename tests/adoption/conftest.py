from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "adoption: builds the wheel and follows the README's 'Add sync to your Django project' "
        "in a fresh project and virtualenv (slow: pip install, a server over HTTP)",
    )
