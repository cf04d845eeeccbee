"""--pipelines-dir in both layouts, imported in place; one broken wrapper does not stop the rest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dualserve import LoadError, Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, frontend_client

GOOD = """
from pathlib import Path
from dualserve import BasePipelineWrapper
from helper import GREETING  # a module beside this file

class PipelineWrapper(BasePipelineWrapper):
    def setup(self):
        self.text = (Path(__file__).parent / "data.txt").read_text()
        self.calls = getattr(self, "calls", 0) + 1

    def run_api(self, name: str = "you") -> dict:
        return {"greeting": GREETING, "text": self.text, "setups": self.calls, "name": name}
"""


def write(folder: Path, source: str, **extra: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline_wrapper.py").write_text(textwrap.dedent(source))
    for name, text in extra.items():
        (folder / name).write_text(text)


def test_folder_of_pipelines(tmp_path: Path) -> None:
    write(tmp_path / "hello", GOOD, **{"helper.py": "GREETING = 'hi'\n", "data.txt": "from disk"})
    write(tmp_path / "broken_import", "import not_a_module_anywhere\n")
    write(tmp_path / "no_class", "X = 1\n")
    write(
        tmp_path / "bad_setup",
        """
        from dualserve import BasePipelineWrapper
        class PipelineWrapper(BasePipelineWrapper):
            def setup(self):
                raise OSError("model weights missing")
            def run_api(self) -> int:
                return 1
        """,
    )
    (tmp_path / "not_a_pipeline").mkdir()
    registry = Registry.from_directory(tmp_path)
    assert sorted(registry.pipelines) == ["hello"]
    assert sorted(registry.failures) == ["bad_setup", "broken_import", "no_class"]
    assert "broken_import/pipeline_wrapper.py: ModuleNotFoundError" in registry.failures["broken_import"]
    assert "defines no class PipelineWrapper" in registry.failures["no_class"]
    assert "setup() raised OSError: model weights missing" in registry.failures["bad_setup"]

    service = Service(registry)
    for frontend in FRONTENDS:
        with frontend_client(frontend, service) as client:
            response = client.get("hello/run?name=x")
            assert response.json() == {"greeting": "hi", "text": "from disk", "setups": 1, "name": "x"}
            broken = client.get("broken_import/run")
            assert broken.status_code == 503
            assert "failed to load" in broken.json()["detail"]
            status = client.get("status").json()
            assert status["pipelines"] == ["hello"]
            assert set(status["failed"]) == {"bad_setup", "broken_import", "no_class"}


def test_single_pipeline_folder(tmp_path: Path) -> None:
    write(tmp_path / "solo", GOOD, **{"helper.py": "GREETING = 'hey'\n", "data.txt": "x"})
    registry = Registry.from_directory(tmp_path / "solo")
    assert list(registry.pipelines) == ["solo"]


def test_missing_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        Registry.from_directory(tmp_path / "nope")


@pytest.mark.parametrize("name", ["status", "flask", "fastapi", "has space", "../up"])
def test_names_that_would_shadow_routes_are_refused(name: str) -> None:
    class Wrapper:
        def run_api(self) -> int:
            return 1

    registry = Registry.from_wrappers({name: Wrapper()})
    assert registry.pipelines == {}
    assert "cannot name a pipeline" in registry.failures[name]


def test_wrapper_without_run_api_is_refused() -> None:
    from dualserve import BasePipelineWrapper

    registry = Registry.from_wrappers({"empty": BasePipelineWrapper()})
    assert "must implement run_api" in registry.failures["empty"]


def test_plain_object_with_run_api_is_enough() -> None:
    class Plain:
        def run_api(self, n: int) -> int:
            return n * 2

    registry = Registry.from_wrappers({"plain": Plain()})
    assert registry.pipelines["plain"].invoke({"n": 4}) == 8
