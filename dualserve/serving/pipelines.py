"""Pipelines: wrappers found, imported in place, set up once, ready to call. No web framework.

Two layouts are understood for ``--pipelines-dir DIR``: every sub-folder of DIR holding a
``pipeline_wrapper.py`` is a pipeline named after the folder, and a DIR that itself holds
``pipeline_wrapper.py`` is one pipeline named after DIR. A wrapper that fails to import or set up
is recorded with its file and error; the others still serve.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import logging
import re
import sys
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hayhooks
from ..core.negotiation import CONTROLS
from ..core.params import Parameters
from ..core.routes import RESERVED_NAMES
from ..exceptions import LoadError
from ..wrapper import SupportsRunApi, declared_media_types
from .aio import portal

__all__ = ["RESERVED_NAMES", "WRAPPER_FILE", "Pipeline", "Registry", "is_valid_name", "load_wrapper"]

logger = logging.getLogger("dualserve")

WRAPPER_FILE = "pipeline_wrapper.py"
_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is made as a pipeline's name is: letters, digits, ``_``, ``.``, ``-``."""
    return _VALID_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Pipeline:
    """One served wrapper: its ``run_api``, the request model, and the declared media types."""

    name: str
    wrapper: Any
    function: Callable[..., Any]
    parameters: Parameters
    media_types: tuple[str, ...]
    description: str | None
    #: The negotiation query parameters (``format``, ``index``) that run_api does not take itself.
    controls: frozenset[str]
    #: Whether the wrapper's module uses Flask or Werkzeug (``send_file`` needs a request context).
    uses_flask: bool
    #: ``run_api``'s return annotation, for the OpenAPI document (``Signature.empty`` if none).
    return_annotation: Any = inspect.Signature.empty

    @classmethod
    def from_wrapper(cls, name: str, wrapper: Any) -> Pipeline:
        if not is_valid_name(name) or name in RESERVED_NAMES:
            raise LoadError(f"{name!r} cannot name a pipeline: use letters, digits, '_', '.', '-' and no route name.")
        # Hayhooks names the async variant run_api_async; either name works, the async one first,
        # but never one that a base class only stubs (Hayhooks' raises NotImplementedError).
        function = next(
            (getattr(wrapper, name) for name in ("run_api_async", "run_api") if _implements(wrapper, name)), None
        )
        if not callable(function):
            raise LoadError(f"{type(wrapper).__name__} must implement run_api (or run_api_async).")
        try:
            parameters = Parameters(function, name)
        except Exception as exc:
            raise LoadError(f"The signature of {type(wrapper).__name__}.run_api cannot be served: {exc}") from exc
        return cls(
            name=name,
            wrapper=wrapper,
            function=function,
            parameters=parameters,
            media_types=declared_media_types(function),
            description=inspect.getdoc(function),
            controls=CONTROLS - parameters.model.model_fields.keys(),
            uses_flask=_uses_flask(wrapper),
            return_annotation=_return_annotation(function),
        )

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods ``/{name}/run`` answers: a GET cannot carry a file, so uploads are POST only."""
        return ("POST",) if self.parameters.uploads else ("GET", "HEAD", "POST")

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether ``run_api`` is ``async def``: a coroutine, or an async generator (a stream)."""
        return inspect.iscoroutinefunction(self.function) or inspect.isasyncgenfunction(self.function)

    def invoke(
        self, arguments: Mapping[str, Any], around: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None
    ) -> Any:
        """Call ``run_api`` from a thread; an async one runs on the shared portal loop, inside
        ``around`` if given (what must be set in the task that awaits it)."""
        value = self.function(**arguments)
        if inspect.isawaitable(value):
            value = portal.call(around(value) if around is not None else value)
        return value


class Registry:
    """The pipelines of one process, and the wrappers that failed to load.

    :param pipelines: ready pipelines by name.
    :param failures: ``{name: "file: error"}`` for each wrapper that failed.
    """

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        failures: Mapping[str, str] | None = None,
        pending: Mapping[str, Awaitable[object]] | None = None,
    ) -> None:
        self.pipelines = dict(pipelines)
        self.failures = dict(failures or {})
        #: The async ``setup()`` of each pipeline built on a server's loop, awaited by :meth:`start`.
        self.pending = dict(pending or {})
        self._starting: asyncio.Lock | None = None

    async def start(self) -> None:
        """Await the async ``setup()`` calls left for the server's loop (at startup, or before the
        first request where no lifespan ran); a pipeline whose setup fails moves to ``failures``."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            while self.pending:
                name, awaitable = next(iter(self.pending.items()))
                try:
                    await awaitable
                except Exception as exc:
                    failure = LoadError(
                        f"{_where(self.pipelines[name].wrapper)}: setup() raised {type(exc).__name__}: {exc}"
                    )
                    self.failures[name] = str(failure)
                    del self.pipelines[name]
                    logger.error("Pipeline %r failed to load: %s", name, failure, exc_info=exc)
                finally:
                    del self.pending[name]

    @classmethod
    def from_wrappers(cls, wrappers: Mapping[str, SupportsRunApi], set_up: bool = True) -> Registry:
        """Set up each wrapper object (its ``setup()`` runs once, now, unless not ``set_up``) and
        serve it under its key."""
        loaders: list[tuple[str, Callable[[], Any]]] = [
            (name, functools.partial(_given, wrapper)) for name, wrapper in wrappers.items()
        ]
        return cls._build(loaders, set_up)

    @classmethod
    def from_directory(cls, directory: str | Path, set_up: bool = True) -> Registry:
        """Discover, import in place, and set up every wrapper under ``directory``. Not ``set_up``
        (an API process whose workers run the pipelines), no ``setup()`` runs: the wrappers are
        only read for their signatures."""
        root = Path(directory).resolve()
        if not root.is_dir():
            raise LoadError(f"The pipelines directory {str(directory)!r} does not exist.")
        if (root / WRAPPER_FILE).is_file():
            files = [(root.name, root / WRAPPER_FILE)]
        else:
            files = [(sub.name, sub / WRAPPER_FILE) for sub in sorted(root.iterdir()) if (sub / WRAPPER_FILE).is_file()]
        registry = cls._build([(name, functools.partial(load_wrapper, path, name)) for name, path in files], set_up)
        logger.info("Serving pipelines %s from %s", sorted(registry.pipelines) or "(none)", root)
        return registry

    @classmethod
    def _build(cls, loaders: list[tuple[str, Callable[[], Any]]], set_up: bool = True) -> Registry:
        pipelines: dict[str, Pipeline] = {}
        failures: dict[str, str] = {}
        pending: dict[str, Awaitable[object]] = {}
        for name, load in loaders:
            try:
                wrapper = load()
                pipelines[name], setup = (
                    _set_up(name, wrapper) if set_up else (Pipeline.from_wrapper(name, wrapper), None)
                )
            except LoadError as exc:
                failures[name] = str(exc)
                logger.error("Pipeline %r failed to load: %s", name, exc, exc_info=exc.__cause__)
                continue
            if setup is not None:
                pending[name] = setup
        return cls(pipelines, failures, pending)


def load_wrapper(path: Path, name: str) -> Any:
    """Import ``path`` in place and instantiate its ``PipelineWrapper``.

    The wrapper's folder is put on ``sys.path`` so it can import modules beside it, and
    ``__file__`` is the real file, so paths relative to it work.
    """
    module_name = "dualserve_pipelines." + re.sub(r"\W", "_", name)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    hayhooks.install()  # `from hayhooks import BasePipelineWrapper, log` works without Hayhooks
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise LoadError(f"{path}: {type(exc).__name__}: {exc}") from exc
    wrapper_class = getattr(module, "PipelineWrapper", None)
    if not isinstance(wrapper_class, type):
        raise LoadError(f"{path}: defines no class PipelineWrapper.")
    try:
        return wrapper_class()
    except Exception as exc:
        raise LoadError(f"{path}: PipelineWrapper() raised {type(exc).__name__}: {exc}") from exc


def _return_annotation(function: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(function).get("return", inspect.Signature.empty)
    except Exception:  # a forward reference that does not resolve: the raw annotation will do
        return inspect.signature(function).return_annotation


def _uses_flask(wrapper: Any) -> bool:
    module = sys.modules.get(type(wrapper).__module__)
    for value in vars(module).values() if module is not None else ():
        origin = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(origin, str) and origin.split(".")[0] in ("flask", "werkzeug"):
            return True
    return False


def _implements(wrapper: Any, name: str) -> bool:
    """Whether the wrapper itself (not Hayhooks' or dualserve's base class) defines ``name``."""
    if name in getattr(wrapper, "__dict__", {}):
        return True
    for cls in type(wrapper).__mro__:
        if name in vars(cls):
            return cls.__module__.split(".")[0] not in _BASE_PACKAGES
    return False


# The packages whose base classes only stub run_api and run_api_async.
_BASE_PACKAGES = frozenset({"hayhooks", "dualserve"})


def _given(wrapper: Any) -> Any:
    return wrapper


def _set_up(name: str, wrapper: Any) -> tuple[Pipeline, Awaitable[object] | None]:
    """The pipeline, set up; or with its async ``setup()`` still to await, when it is built on
    the portal's loop itself (a server's, which cannot wait for itself): :meth:`Registry.start`."""
    pipeline = Pipeline.from_wrapper(name, wrapper)
    setup = getattr(wrapper, "setup", None)
    if callable(setup):
        try:
            outcome = setup()
            if inspect.isawaitable(outcome):
                if portal.is_current():
                    return pipeline, outcome
                portal.call(outcome)
        except Exception as exc:
            raise LoadError(f"{_where(wrapper)}: setup() raised {type(exc).__name__}: {exc}") from exc
    return pipeline, None


def _where(wrapper: Any) -> str:
    try:
        return inspect.getsourcefile(type(wrapper)) or type(wrapper).__qualname__
    except (TypeError, OSError):  # defined in a notebook, `python -c`, or exec()
        return type(wrapper).__qualname__
