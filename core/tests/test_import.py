"""Importing the kernel is cheap: no plugin, no web framework, no vendor SDK, no ML library."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "stripe", "litellm", "openai",
         "anthropic", "torch", "numpy", "transformers", "sentence_transformers", "nacl"]


def modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_vendo_loads_nothing_heavy() -> None:
    loaded = modules_after("import vendo")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "vendo.kernel" not in loaded and "vendo.app" not in loaded


def test_public_surface_resolves_lazily() -> None:
    import vendo

    for name in vendo.__all__:
        assert getattr(vendo, name) is not None, name
    assert vendo.Kernel.__module__ == "vendo.kernel"
    assert vendo.create_app.__module__ == "vendo.app"


def test_building_a_kernel_imports_no_vendor_or_ml_library() -> None:
    loaded = modules_after(
        "from vendo import Kernel, load_settings\n"
        "Kernel(load_settings(overrides={'plugins': {'autoload': False}})).load()"
    )
    vendor = {"stripe", "litellm", "openai", "anthropic", "torch", "numpy", "transformers", "nacl"}
    assert not loaded & vendor, sorted(loaded & vendor)
