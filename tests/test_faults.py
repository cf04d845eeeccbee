"""Faults on a real server: a full disk and an unreadable file give a JSON error, the temp files
go, and the server keeps serving the others. (A failing setup(), a hang and a failure mid-stream
are in test_discovery.py, test_timeout.py and test_real_servers.py.)

A full disk is a file size limit (RLIMIT_FSIZE) on the server process: every write past it fails
with EFBIG, as writes to a full disk fail with ENOSPC, and Python ignores the SIGXFSZ that comes
with it. An unreadable file is mode 000; root reads anything, so a root test server runs without
the DAC capabilities (util-linux's setpriv).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest

from tests.servers import MOUNTED, dualserve_command, running
from tests.test_real_servers import PIPELINES, SERVERS, eventually

FILE_SIZE_LIMIT = 1024 * 1024
WITHOUT_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def _file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_full_disk_is_a_json_error_and_the_server_goes_on(server_name: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server_name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with running(command, port, {"TMPDIR": str(scratch)}, preexec_fn=_file_size_limit) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            # The pipeline's own write fails: its exception is a 500 in the contract's shape.
            failed = httpx2.get(f"{base}/disk_writer/run", params={"size": 2 * FILE_SIZE_LIMIT}, timeout=30)
            assert failed.status_code == 500
            assert failed.json() == {"detail": "Pipeline execution failed"}
            # An upload too big to spool: 507, said in JSON.
            upload = {"file": ("big.bin", os.urandom(2 * FILE_SIZE_LIMIT), "application/octet-stream")}
            refused = httpx2.post(f"{base}/echo_size/run", files=upload, timeout=30)
            assert refused.status_code == 507
            assert refused.json() == {"detail": "The server could not store the upload: File too large."}
            # Writes under the limit still work; nothing is left behind in the temp folder.
            small = httpx2.get(f"{base}/disk_writer/run", params={"size": 1000}, timeout=30)
            assert small.status_code == 200 and len(small.content) == 1000
            small_upload = {"file": ("small.bin", b"x" * 1000, "application/octet-stream")}
            assert httpx2.post(f"{base}/echo_size/run", files=small_upload, timeout=30).status_code == 200
            assert httpx2.get(f"{base}/status", timeout=10).status_code == 200
        assert eventually(lambda: not any(scratch.iterdir())), list(scratch.iterdir())
        assert "Pipeline 'disk_writer' failed" in started.log()
        assert "An upload could not be spooled to a temporary file" in started.log()


def _without_dac_override() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without util-linux's setpriv: no way to make a file unreadable")
    probe = subprocess.run([*WITHOUT_DAC, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and setpriv cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip()}")
    return WITHOUT_DAC


@pytest.mark.parametrize("server_name", SERVERS)
def test_an_unreadable_file_is_a_json_500_and_is_deleted(server_name: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server_name)
    with running([*_without_dac_override(), *command], port) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            for method in ("GET", "HEAD"):
                response = httpx2.request(method, f"{base}/unreadable/run", params={"directory": str(tmp_path)})
                assert response.status_code == 500
                assert response.headers["content-type"] == "application/json"
                if method == "GET":
                    assert response.json() == {"detail": "Pipeline execution failed"}
                assert not (tmp_path / "secret.png").exists()  # handed over with delete_after
            assert httpx2.get(f"{base}/status", timeout=10).status_code == 200
        assert "which cannot be read: Permission denied" in started.log()
