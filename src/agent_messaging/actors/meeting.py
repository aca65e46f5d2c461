"""Placeholder: being written (see the issue)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ..runtime._services import Services
from ..runtime.registry import Registry

__all__ = ["Meetings"]

T = TypeVar("T")


class Meetings(Generic[T]):
    """Placeholder facade."""

    def __init__(self, services: Services[T], registry: Registry[T]) -> None:
        self.services = services
        self.registry = registry

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until the runtime closes."""
        task_status.started()
        await anyio.sleep_forever()
