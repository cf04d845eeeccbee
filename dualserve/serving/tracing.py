"""OpenTelemetry: a SERVER span per request, from its arrival to its last byte. No web framework.

Optional (the ``otel`` extra). The request path calls :func:`start_span` when a request arrives and
:func:`end_span` once its last byte is sent, on every frontend. Both do nothing, and
:func:`start_span` answers ``None``, unless the OpenTelemetry API is installed and a tracer
provider is configured: OpenTelemetry's global one (``trace.set_tracer_provider``, or what
``opentelemetry-instrument`` sets), or the one given to :func:`use_tracer_provider`. Without the
API that costs a check of a module global; with it but unconfigured, a call to
``trace.get_tracer_provider``. The span follows the W3C ``traceparent`` of the request (through
the global propagator), and carries HTTP's semantic-convention attributes.

The span is not made the current one: a streamed answer ends in another thread or task than the
one it began in, where a context token cannot be detached. Code that wants its spans nested under
the request's can wrap its work in ``trace.use_span(span, end_on_exit=False)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..__version__ import __version__
from .metrics import bounded_method

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["end_span", "start_span", "use_tracer_provider"]

_HeadersGet = Callable[[str], str | None]


class _Api(NamedTuple):
    """What the spans need of OpenTelemetry, imported once."""

    trace: Any
    propagate: Any
    getter: Any
    unconfigured: tuple[type, ...]
    error: Any  # Status(ERROR): immutable, so one serves every span


#: Seconds between two looks for a tracer provider while none is configured.
RECHECK_EVERY = 1.0

_api: _Api | None = None
_loaded = False
_unconfigured_until = 0.0
_provider: TracerProvider | None = None
# (provider, its tracer): a tracer is made once per provider, not per request.
_tracer: tuple[object, Any] | None = None


def _load() -> _Api | None:
    global _api, _loaded
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.propagators.textmap import Getter
        from opentelemetry.trace import Status, StatusCode
    except ImportError:
        _api = None
    else:

        class _HeadersGetter(Getter[_HeadersGet]):
            """Reads propagation headers through the frontend's ``headers.get``, which ignores case."""

            def get(self, carrier: _HeadersGet, key: str) -> list[str] | None:
                value = carrier(key)
                return None if value is None else [value]

            def keys(self, carrier: _HeadersGet) -> list[str]:
                # Only propagators that scan for prefixed headers (Jaeger's baggage) ask; the W3C ones don't.
                return []

        unconfigured = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        _api = _Api(trace, propagate, _HeadersGetter(), unconfigured, Status(StatusCode.ERROR))
    _loaded = True
    return _api


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` instead of OpenTelemetry's global one; ``None`` returns to the global.

    For tests (OpenTelemetry sets its global provider once per process) and for users who prefer
    explicit setup to a global.
    """
    global _provider, _unconfigured_until
    _provider = provider
    _unconfigured_until = 0.0


def start_span(
    method: str,
    route_template: str,
    pipeline: str,
    request_id: str,
    headers_get: Callable[[str], str | None],
    start_time: int | None = None,
    *,
    path: str | None = None,
) -> Span | None:
    """Start the SERVER span of a request, or answer ``None`` when tracing is off.

    :param method: the request's method.
    :param route_template: the matched route as declared, ``/{pipeline}/run`` (never the path: it
        names the span, and span names must be few).
    :param pipeline: the pipeline's name, ``""`` for a route of no pipeline.
    :param request_id: the request's ``X-Request-ID``.
    :param headers_get: the request headers' ``get``, case-insensitive, for ``traceparent`` and
        ``tracestate`` (or whatever the global propagator reads).
    :param start_time: when the request arrived, ``time.time_ns()``; by default, now. The span is
        often started once the answer is made, long after the request arrived.
    :param path: the request's path, recorded as ``url.path``, if given.
    """
    api = _api if _loaded else _load()
    if api is None:
        return None
    global _unconfigured_until
    if _provider is None and time.monotonic() < _unconfigured_until:
        return None  # asked less than a second ago: OpenTelemetry is installed, not configured
    provider = _provider if _provider is not None else api.trace.get_tracer_provider()
    if isinstance(provider, api.unconfigured):
        # Asking costs microseconds (it reads the environment); a provider is set at startup, so
        # one look a second is soon enough to see it.
        _unconfigured_until = time.monotonic() + RECHECK_EVERY
        return None
    global _tracer
    cached = _tracer
    if cached is None or cached[0] is not provider:
        cached = _tracer = (provider, provider.get_tracer("dualserve", __version__))
    known = bounded_method(method)
    attributes: dict[str, str] = {"http.request.method": known, "http.route": route_template}
    if known == "_OTHER":
        attributes["http.request.method_original"] = method
    if path is not None:
        attributes["url.path"] = path
    if pipeline:
        attributes["dualserve.pipeline"] = pipeline
    if request_id:
        attributes["dualserve.request_id"] = request_id
    # The semantic conventions name a span of an unknown method "HTTP {route}".
    name = f"{method if known != '_OTHER' else 'HTTP'} {route_template}"
    parent = api.propagate.extract(headers_get, getter=api.getter)
    span: Span = cached[1].start_span(
        name, context=parent, kind=api.trace.SpanKind.SERVER, attributes=attributes, start_time=start_time
    )
    return span


def end_span(span: Span | None, status: int, sent: int) -> None:
    """End the span :func:`start_span` answered, once the last byte is sent; nothing for ``None``.

    :param status: the status code sent; a 5xx marks the span an error (a 4xx is the client's,
        not the server's, by the semantic conventions).
    :param sent: body bytes sent.
    """
    if span is None or _api is None:
        return
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("http.response.body.size", sent)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(_api.error)
    span.end()
