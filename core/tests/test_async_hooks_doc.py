"""The hooks the kernel awaits are the ones whose docstrings say so, and no other."""

from vendo import hookspecs


def test_async_hooks_match_their_documentation() -> None:
    documented = {
        name for name in dir(hookspecs)
        if name.startswith("vendo_") and "may be async" in (getattr(hookspecs, name).__doc__ or "").lower()
    }
    assert documented == set(hookspecs.ASYNC_HOOKS)
