"""OpenTelemetry tracing (the ``[otel]`` extra): spans, and the W3C trace context carried inside messages.

A leaf: it imports nothing of ours, and ``opentelemetry`` only when :func:`load` is first called (by a
runtime opened with ``Config(tracing=True)``). Everything else here is called only by runtimes with
tracing on: the callers check their flag (``Services.tracing``, ``Writer.tracing``) before calling, so a
runtime with tracing off makes no span, builds no context manager and writes no trace context.

The trace context of a message travels in its stored metadata under :data:`TRACE_KEY`, as the
configured propagators write it (by default the W3C ``traceparent`` and ``tracestate``): it is added
when the message is written and taken out when it is read, so user-visible metadata never shows it.
The spans follow OpenTelemetry's messaging conventions where they fit (``docs/tracing.md`` lists them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, Tracer

__all__ = [
    "SYSTEM",
    "TRACE_KEY",
    "Carrier",
    "annotate",
    "commit_span",
    "current",
    "extract",
    "fail",
    "inject",
    "load",
    "root",
    "span",
    "span_context",
    "use",
]

#: The metadata key under which a message carries its trace context (reserved: refused in user metadata).
TRACE_KEY = "agent_messaging.trace"
#: ``messaging.system`` of our spans.
SYSTEM = "agent_messaging"
#: A trace context as the propagators write it: ``{"traceparent": "00-...", "tracestate": "..."}``.
Carrier = dict[str, str]


class _Otel:
    """The OpenTelemetry API, imported once (by :func:`load`)."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        try:
            from importlib.metadata import version

            ours = version("agent-messaging")
        except Exception:  # running from a source tree that is not installed
            ours = "0"
        self.trace = trace
        self.context = context
        self.propagate = propagate
        self.empty: Callable[[], Context] = context.Context
        self.get_current: Callable[[], Context] = context.get_current
        self.extract: Callable[..., Context] = propagate.extract
        self.tracer: Tracer = trace.get_tracer("agent_messaging", ours)
        self.kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "client": trace.SpanKind.CLIENT,
            "server": trace.SpanKind.SERVER,
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
        }


_otel: _Otel | None = None


def load() -> bool:
    """Import the OpenTelemetry API (once); False if it is not installed (the ``[otel]`` extra)."""
    global _otel
    if _otel is None:
        try:
            _otel = _Otel()
        except ImportError:
            return False
    return True


def _api() -> _Otel:
    assert _otel is not None, "tracing is used before load()"
    return _otel


def root() -> Context:
    """An empty context: a span started in it is the root of a new trace."""
    return _api().empty()


def current() -> Context:
    """The current context (to hand to another task: a meeting command to the meeting's actor)."""
    return _api().get_current()


def span_context() -> SpanContext | None:
    """The current span's context, if a span is current (a write remembers whose it is)."""
    found = _api().trace.get_current_span().get_span_context()
    return found if found.is_valid else None


def inject() -> Carrier | None:
    """The current trace context as a message carries it (None when no span is current)."""
    carrier: Carrier = {}
    _api().propagate.inject(carrier)
    return carrier or None


def extract(carrier: object) -> Context:
    """The context a message's trace context names (an empty one for none or a malformed one)."""
    api = _api()
    if not isinstance(carrier, dict):
        return api.empty()
    values = {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}
    return api.extract(values, context=api.empty())


@contextlib.contextmanager
def span(
    name: str,
    kind: str,
    attributes: dict[str, Any],
    *,
    parent: Context | None = None,
    links: Sequence[SpanContext] = (),
) -> Iterator[Span]:
    """Start a span (a child of ``parent``, else of the current span), make it current, end it on exit.

    An exception leaving the block marks the span as failed (status ERROR, ``error.type``; an
    ``Exception`` is also recorded as an event with its traceback) and goes on.
    """
    api = _api()
    started = api.tracer.start_span(
        name,
        context=parent,
        kind=api.kinds[kind],
        attributes=attributes,
        links=[api.trace.Link(link) for link in links] or None,
    )
    with api.trace.use_span(started, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield started
        except BaseException as exc:
            _failed(started, exc)
            raise


@contextlib.contextmanager
def use(ended: Span) -> Iterator[None]:
    """Make ``ended`` (a span already ended) current again, so that what follows is its child."""
    with _api().trace.use_span(ended, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        yield


def commit_span(parents: Sequence[SpanContext], attributes: dict[str, Any]) -> contextlib.AbstractContextManager[Span]:
    """The span of one committed batch: a child of the one span whose writes it carries, else a root
    linked to each of them (a batch serves many traces)."""
    distinct = list({(parent.trace_id, parent.span_id): parent for parent in parents}.values())
    if len(distinct) == 1:
        api = _api()
        parent = api.trace.set_span_in_context(api.trace.NonRecordingSpan(distinct[0]), api.empty())
        return span("writer commit", "client", attributes, parent=parent)
    return span("writer commit", "client", attributes, parent=root(), links=distinct)


def annotate(attributes: dict[str, Any]) -> None:
    """Add ``attributes`` to the current span."""
    _api().trace.get_current_span().set_attributes(attributes)


def fail(exc: BaseException) -> None:
    """Mark the current span as failed by ``exc`` (an error handled without leaving the span's block)."""
    _failed(_api().trace.get_current_span(), exc)


def _failed(target: Span, exc: BaseException) -> None:
    if not target.is_recording():
        return
    api = _api()
    target.set_attribute("error.type", type(exc).__qualname__)
    if isinstance(exc, Exception):
        target.record_exception(exc)
    target.set_status(api.trace.Status(api.trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:1000]))
