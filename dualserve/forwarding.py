"""Relay another service's media through a route as a stream, never holding it in memory.

In a wrapper, on either frontend: ``return forward("http://images.internal/render", json={...})``.
In a plain route: :func:`starlette_response` (FastAPI) or :func:`flask_response` (Flask). The
upstream's type and file name are kept; its body is passed on chunk by chunk, so memory stays
flat however large it is, and the upstream connection is closed when the client's response ends,
completed or not. An upstream error becomes a 502 JSON answer (504 on a timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

from .client import CHUNK, _filename
from .exceptions import HTTPError
from .media import Media

__all__ = ["aforward", "flask_response", "forward", "starlette_response"]


def forward(url: str, method: str = "GET", timeout: float = 120.0, **request: Any) -> Media:
    """A :class:`Media` streaming ``url``'s answer; ``request`` goes to httpx2 (``json=``, ``params=``, ...)."""
    client = httpx2.Client(timeout=timeout)
    try:
        response = client.send(client.build_request(method, url, **request), stream=True)
    except httpx2.HTTPError as exc:
        client.close()
        raise _upstream_error(exc) from exc
    if response.status_code >= 400:
        response.read()
        client.close()
        raise HTTPError(502, f"The upstream service answered {response.status_code}.")

    def body() -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(CHUNK)
        finally:
            response.close()
            client.close()

    return _media(body(), response.headers)


async def aforward(url: str, method: str = "GET", timeout: float = 120.0, **request: Any) -> Media:
    """The async twin of :func:`forward`, for ``async def run_api``."""
    client = httpx2.AsyncClient(timeout=timeout)
    try:
        response = await client.send(client.build_request(method, url, **request), stream=True)
    except httpx2.HTTPError as exc:
        await client.aclose()
        raise _upstream_error(exc) from exc
    if response.status_code >= 400:
        await response.aread()
        await client.aclose()
        raise HTTPError(502, f"The upstream service answered {response.status_code}.")

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk
        finally:
            await response.aclose()
            await client.aclose()

    return _media(body(), response.headers)


def starlette_response(url: str, method: str = "GET", **request: Any) -> Any:
    """For a plain FastAPI route: a ``StreamingResponse`` relaying ``url``. It connects before it
    returns, so call it from a ``def`` route (FastAPI runs those in a thread)."""
    from starlette.responses import StreamingResponse

    return _framework_response(forward(url, method, **request), StreamingResponse)


def flask_response(url: str, method: str = "GET", **request: Any) -> Any:
    """For a plain Flask view: a streamed ``flask.Response`` relaying ``url``."""
    import flask

    media = forward(url, method, **request)
    response = flask.Response(media.content, mimetype=media.media_type, direct_passthrough=True)
    response.headers.update(_disposition(media))
    return response


def _framework_response(media: Media, response_class: Any) -> Any:
    return response_class(media.content, media_type=media.media_type, headers=_disposition(media))


def _disposition(media: Media) -> dict[str, str]:
    from .core.http import content_disposition

    return {"content-disposition": content_disposition(media.disposition, media.filename)} if media.filename else {}


def _media(body: Any, headers: httpx2.Headers) -> Media:
    disposition = headers.get("content-disposition", "")
    return Media(
        body,
        media_type=headers.get("content-type", "application/octet-stream"),
        filename=_filename(disposition),
        disposition="attachment" if disposition.lower().startswith("attachment") else "inline",
    )


def _upstream_error(exc: httpx2.HTTPError) -> HTTPError:
    if isinstance(exc, httpx2.TimeoutException):
        return HTTPError(504, "The upstream service did not answer in time.")
    return HTTPError(502, f"The upstream service could not be reached: {type(exc).__name__}.")
