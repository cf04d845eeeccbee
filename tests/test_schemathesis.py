"""Schemathesis against both frontends' own documents: no 5xx, and every answer matches what the
document says (status, media type, schema). Bounded in examples so the suite stays quick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from dualserve import Registry, fastapi_app, flask_app

EXAMPLES = Path(__file__).parent.parent / "examples" / "pipeline_wrappers"
REGISTRY = Registry.from_directory(EXAMPLES)
BOUNDS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))

# Like FastAPI, dualserve coerces in pydantic's lax mode ("512" -> 512, false -> 0.0) on purpose,
# so a "schema-violating" value that is accepted is not a failure here. Everything else is checked.
LAX = [checks.negative_data_rejection, checks.positive_data_acceptance]

fastapi_schema = schemathesis.openapi.from_asgi("/openapi.json", fastapi_app(REGISTRY))
flask_schema = schemathesis.openapi.from_wsgi("/openapi.json", flask_app(REGISTRY))


@fastapi_schema.parametrize()
@BOUNDS
def test_fastapi_frontend(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=LAX)


@flask_schema.parametrize()
@BOUNDS
# Werkzeug's test client (schemathesis' WSGI transport) never closes responses, so the uploads an
# answer closes in its call_on_close are closed by the garbage collector instead, with a warning.
# Real servers close every response (tests/test_real_servers.py uploads through each of them).
@pytest.mark.filterwarnings("ignore:Exception ignored in. <function SpooledTemporaryFile.__del__")
def test_flask_frontend(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=LAX)
