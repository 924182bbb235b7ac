"""The test kit's own fixtures, used as a plugin author uses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_isolated_environment_drops_vendo_variables_and_changes_directory(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VENDO_DATABASE_URL", "sqlite:////developer/own.db")
    monkeypatch.setenv("VENDO_TEST_DATABASE_URL", "postgresql+psycopg://ci/test")
    work = request.getfixturevalue("vendo_isolated_environment")
    assert "VENDO_DATABASE_URL" not in os.environ
    assert os.environ["VENDO_TEST_DATABASE_URL"] == "postgresql+psycopg://ci/test"  # the test run's own
    assert work == tmp_path / "work" and Path.cwd() == work and not any(work.iterdir())
