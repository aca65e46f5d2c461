"""Tracing helpers of the tests: the process's in-memory exporter, spans as plain records, a JSON-lines
exporter for child processes, span trees.

Not a test module. OpenTelemetry allows one global TracerProvider per process: :func:`memory_exporter`
installs it (an SDK provider exporting to an ``InMemorySpanExporter``) the first time it is called, for
the rest of the test session. Runtimes with tracing off never use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER: InMemorySpanExporter | None = None


@dataclass(frozen=True)
class Record:
    """A finished span, as plain data (from this process or read back from a child's file)."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    status: str
    links: list[str] = field(default_factory=list)
    process: str = ""
    start: int = 0
    events: list[str] = field(default_factory=list)


def record(span: ReadableSpan, process: str = "") -> Record:
    """``span`` as a :class:`Record`."""
    context = span.context
    assert context is not None
    return Record(
        name=span.name,
        kind=span.kind.name,
        trace_id=trace.format_trace_id(context.trace_id),
        span_id=trace.format_span_id(context.span_id),
        parent_id=None if span.parent is None else trace.format_span_id(span.parent.span_id),
        attributes=dict(span.attributes or {}),
        status=span.status.status_code.name,
        links=[trace.format_span_id(link.context.span_id) for link in span.links],
        process=process,
        start=span.start_time or 0,
        events=[event.name for event in span.events],
    )


def memory_exporter() -> InMemorySpanExporter:
    """This process's in-memory exporter (installed with the global TracerProvider on first use)."""
    global _EXPORTER
    if _EXPORTER is None:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _EXPORTER = exporter
    return _EXPORTER


def finished(process: str = "") -> list[Record]:
    """The spans this process finished since the exporter was last cleared."""
    return [record(span, process) for span in memory_exporter().get_finished_spans()]


class FileExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (a child process's spans, for the test)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.process = f"pid {os.getpid()}"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``, one line each, and flush."""
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(asdict(record(span, self.process))) + "\n")
        return SpanExportResult.SUCCESS


def install_file_exporter(path: str, *, batch: bool = False) -> None:
    """Make this process's global TracerProvider write every finished span to ``path`` (see FileExporter):
    at once, or (``batch``) through a ``BatchSpanProcessor``, which writes them every 5 s and at exit."""
    provider = TracerProvider()
    exporter = FileExporter(path)
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def read_records(path: Path) -> list[Record]:
    """The spans a :class:`FileExporter` wrote to ``path`` (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [Record(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def named(records: Iterable[Record], name: str) -> list[Record]:
    """The spans called ``name``."""
    return [r for r in records if r.name == name]


def one(records: Iterable[Record], name: str) -> Record:
    """The one span called ``name``."""
    found = named(records, name)
    assert len(found) == 1, f"{len(found)} spans {name!r} in {sorted(r.name for r in records)}"
    return found[0]


def tree(records: Sequence[Record], attributes: Sequence[str] = ()) -> str:
    """The spans as an indented tree (children in start order; a span whose parent is missing is a root)."""
    ids = {r.span_id for r in records}
    children: dict[str | None, list[Record]] = {}
    for r in sorted(records, key=lambda r: r.start):
        children.setdefault(r.parent_id if r.parent_id in ids else None, []).append(r)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            shown = "".join(f" {key}={r.attributes[key]}" for key in attributes if key in r.attributes)
            status = " ERROR" if r.status == "ERROR" else ""
            links = f" links={len(r.links)}" if r.links else ""
            head = f"{r.name} [{r.kind}] {r.process} trace={r.trace_id[:8]}"
            lines.append("    " * depth + f"{head}{status}{links}{shown}")
            walk(r.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
