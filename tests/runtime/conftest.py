"""Runtime tests run on both anyio backends."""

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test in tests/runtime runs once per backend."""
    return str(request.param)
