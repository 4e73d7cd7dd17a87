"""Shared pytest options. Fixtures live beside the tests that use them (``*_fixtures.py``)."""

from __future__ import annotations

import pytest

# Fixture modules (beside the tests): registered here once, so pytest rewrites their asserts.
pytest_plugins = [
    "emulator_fixtures",
    "operator_fixtures",
    "prom_fixtures",
    "redis_fixtures",
    "notify_fixtures",
    "cel_fixtures",
]
# The dashboard's headless Chromium (tests/browser_fixtures.py): skips or fails like the others.
pytest_plugins.append("browser_fixtures")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e",
        action="store_true",
        default=False,
        help="run the end-to-end tests against the kind cluster (kube context kind-jeffrey only)",
    )
