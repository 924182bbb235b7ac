"""README's "Try it" block, run as written (bash, curl, `uv run vendo`) against a real
`vendo serve` on the embedded default: sign up, local checkout, Pro, consume."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import run_vendo, vendo_env

ROOT = Path(__file__).resolve().parents[1]


def try_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"\*\*Try it\*\*.*?```bash\n(.*?)```", readme, re.S)
    assert found, "README.md lost its 'Try it' block"
    return found.group(1)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("uv") is None, reason="needs curl and uv")
def test_the_try_it_block_subscribes_and_consumes(serve, tmp_path: Path) -> None:
    env = vendo_env(VENDO_DATA_DIR=str(tmp_path / "data"))
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    server = serve(env)
    server.wait_ready()
    script = try_it_block().replace("http://127.0.0.1:8000", server.url)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "loaded as catalog version 1" in lines[0]
    assert "active" in lines
    decision = json.loads(lines[-1])
    assert (decision["allowed"], decision["feature"], decision["used"], decision["plan"]) == \
        (True, "semantic_search", 1, "pro")
