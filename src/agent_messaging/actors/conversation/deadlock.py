"""The wait-for graph of agents blocked inside their own handlers (deadlock detection).

An edge ``a -> b`` means: a handler of agent ``a`` is blocked in
``send_and_wait`` waiting for agent ``b``. Calls made outside any handler add
no edge (they do not block an agent). Adding an edge that closes a cycle raises
:class:`~agent_messaging.errors.DeadlockDetected` naming the cycle, so the call
fails at once instead of waiting out its timeout. The graph is per process.
"""

from __future__ import annotations

from collections import Counter

from ...errors import DeadlockDetected

__all__ = ["WaitGraph"]


class WaitGraph:
    """Agents (external ids) blocked in their handlers, and whom each waits for."""

    def __init__(self) -> None:
        self._edges: dict[str, Counter[str]] = {}

    def add(self, waiter: str, target: str) -> None:
        """Record ``waiter -> target``; ``DeadlockDetected`` (nothing recorded) if it would close a cycle."""
        path = self._path(target, waiter)
        if path is not None:
            raise DeadlockDetected([waiter, *path])
        self._edges.setdefault(waiter, Counter())[target] += 1

    def remove(self, waiter: str, target: str) -> None:
        """Forget one ``waiter -> target`` edge."""
        targets = self._edges.get(waiter)
        if targets is None:
            return
        targets[target] -= 1
        if targets[target] <= 0:
            del targets[target]
        if not targets:
            del self._edges[waiter]

    def _path(self, start: str, goal: str) -> list[str] | None:
        """A path ``start -> ... -> goal`` along the edges (``[start]`` when start is goal), or None."""
        if start == goal:
            return [start]
        parents: dict[str, str] = {}
        stack = [start]
        seen = {start}
        while stack:
            node = stack.pop()
            for nxt in sorted(self._edges.get(node, ())):
                if nxt in seen:
                    continue
                parents[nxt] = node
                if nxt == goal:
                    path = [goal]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1]
                seen.add(nxt)
                stack.append(nxt)
        return None
