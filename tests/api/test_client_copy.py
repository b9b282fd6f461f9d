"""``consensus/client.py`` copied alone next to a script works (README "Python client"): it
needs only the standard library, and nothing else of this project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from consensus import client, request_ids
from tests.fixtures.procs import PROJECT

SCRIPT = """
import client
c = client.PaxosClient("127.0.0.1", 33333, token="t")
ids = {client.new_request_id() for _ in range(3)}
assert len(ids) == 3 and all(len(i) == 28 for i in ids), ids
assert client.MyPaxosClient is client.PaxosClient
print(repr(c))
"""


def test_a_copied_client_py_imports_and_works_on_its_own(tmp_path: Path) -> None:
    shutil.copy(PROJECT / "consensus" / "client.py", tmp_path / "client.py")
    # -I: no PYTHONPATH, no user site, no current folder on sys.path (the project is not
    # importable); the script puts back the folder of the copy, and nothing else.
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.')\n{SCRIPT}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "<PaxosClient [127.0.0.1:33333]>"


def test_request_ids_are_made_in_one_place() -> None:
    assert request_ids.new_request_id is client.new_request_id
