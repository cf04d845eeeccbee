"""Returns a file the server process may not read (mode 000), handed over for deletion."""

from pathlib import Path

from dualserve import BasePipelineWrapper, Media


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, directory: str) -> Media:
        path = Path(directory) / "secret.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
        path.chmod(0)
        return Media(path, delete_after=True)
