"""The core: what a client is sent, decided without a web framework.

Like Werkzeug's ``sansio`` package, every module here imports no web framework (Flask, FastAPI,
Starlette, anyio, a2wsgi, uvicorn, gunicorn) and does no request or response IO: it reads what a
pipeline returned and what the request asked, and decides the status, every header and the body
(bytes, a byte range of a file, or an iterator). The frontends only move that decision onto their
framework, so the same request gets the same answer on every frontend.

Stages, in the order a request meets them: ``request`` (what the core reads of a request),
``routes`` (which endpoint answers a path), ``params`` and ``forms`` (arguments, validated),
``returns`` (what ``run_api`` returned, as a Result), ``negotiation`` (which representation),
``http`` (the HTTP rules: validators, Range, conditional requests), ``reply`` (the finished answer).

Werkzeug's sans-IO parsers (``werkzeug.http``, ``werkzeug.formparser``), pydantic, ``filetype``,
``xxhash`` and Pillow are used on purpose; none of them serves HTTP. ``tests/test_core_isolation.py``
imports every module here with the frameworks made unimportable.
"""
