"""The SDK README's tutorial, run command by command in a fresh environment."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def tutorial_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- tutorial:start -->(.*?)<!-- tutorial:end -->", text, re.S)
    assert block, "the tutorial markers are missing from sdk/README.md"
    return [line[2:].strip() for line in block.group(1).splitlines() if line.startswith("$ ")]


def test_tutorial_has_the_five_steps() -> None:
    commands = tutorial_commands()
    assert [c.split()[0] for c in commands] == ["vendo-sdk", "pip", "pytest", "vendo-sdk", "vendo"]


def test_tutorial_runs(venv, tmp_path: Path) -> None:
    outputs = [venv.run(command, cwd=tmp_path).stdout for command in tutorial_commands()]
    assert "created vendo-tool-weather" in outputs[0]
    assert " passed" in outputs[2] and "failed" not in outputs[2]
    assert outputs[3].startswith("ok: vendo-tool-weather 0.1.0")
    rows = {line.split()[0]: line.split() for line in outputs[4].splitlines()[1:]}
    assert rows["tool-weather"][1:4] == ["0.1.0", "vendo-tool-weather", "ok"]
