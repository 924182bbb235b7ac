"""Plugin discovery, controls, isolation of broken plugins and per-kernel managers."""

from __future__ import annotations

import logging
import textwrap
import types

import pytest

from vendo import StartupError, hookimpl
from vendo.kernel import Kernel

GOOD = textwrap.dedent(
    """
    from vendo import hookimpl

    vendo_api = ">=1.0,<2"

    @hookimpl
    def vendo_register_tools(register):
        class Echo:
            name = "echo"
            description = "Repeat the text"
            parameters = {"type": "object", "properties": {"text": {"type": "string"}}}
            def run(self, arguments):
                return arguments["text"]
        register("echo", Echo())
    """
)


def statuses(kernel: Kernel) -> dict[str, tuple[str, str | None]]:
    return {p.name: (p.status, p.error) for p in kernel.plugins}


def test_entry_point_plugin_is_discovered_with_its_distribution(fake_site, make_kernel) -> None:
    fake_site("vendo-tool-echo", {"vendo_tool_echo": GOOD}, {"tool-echo": "vendo_tool_echo"}, version="2.3.4")
    kernel = make_kernel(autoload=True).load()
    info = kernel.plugin("tool-echo")
    assert (info.status, info.distribution, info.version) == ("ok", "vendo-tool-echo", "2.3.4")
    assert info.hooks == ["vendo_register_tools"]
    assert info.api == ">=1.0,<2"
    assert kernel.providers.get("tool", "echo").run({"text": "hi"}) == "hi"


def test_builtin_core_is_listed_first_and_cannot_be_disabled(fake_site, make_kernel) -> None:
    fake_site("vendo-tool-echo", {"vendo_tool_echo": GOOD}, {"tool-echo": "vendo_tool_echo"})
    kernel = make_kernel(autoload=True, controls={"disabled": ["core"]}).load()
    assert kernel.plugins[0].name == "core" and kernel.plugins[0].builtin
    assert kernel.plugin("core").status == "ok"
    assert "built-in plugin 'core' cannot be disabled" in kernel.warnings


def test_autoload_off_skips_entry_points(fake_site, make_kernel) -> None:
    fake_site("vendo-tool-echo", {"vendo_tool_echo": GOOD}, {"tool-echo": "vendo_tool_echo"})
    kernel = make_kernel(autoload=False).load()
    assert [p.name for p in kernel.plugins] == ["core"]


def test_block_list_and_allow_list(fake_site, make_kernel) -> None:
    fake_site("vendo-a", {"vendo_a": GOOD}, {"a": "vendo_a"})
    fake_site("vendo-b", {"vendo_b": GOOD.replace('"echo"', '"echo-b"')}, {"b": "vendo_b"})
    blocked = make_kernel(autoload=True, controls={"disabled": ["a"]}).load()
    assert statuses(blocked)["a"] == ("disabled", None)
    assert statuses(blocked)["b"][0] == "ok"
    allowed = make_kernel(autoload=True, controls={"enabled": ["a"]}).load()
    assert statuses(allowed)["a"][0] == "ok"
    assert statuses(allowed)["b"] == ("disabled", None)


def test_disabled_plugin_is_never_imported(fake_site, make_kernel) -> None:
    fake_site("vendo-boom", {"vendo_boom": "raise SystemExit('imported!')"}, {"boom": "vendo_boom"})
    kernel = make_kernel(autoload=True, controls={"disabled": ["boom"]}).load()
    assert statuses(kernel)["boom"] == ("disabled", None)


def test_plugin_raising_at_import_is_failed_and_kernel_still_loads(fake_site, make_kernel) -> None:
    fake_site("vendo-broken", {"vendo_broken": "import not_a_real_module_xyz\n"}, {"broken": "vendo_broken"})
    fake_site("vendo-tool-echo", {"vendo_tool_echo": GOOD}, {"tool-echo": "vendo_tool_echo"})
    kernel = make_kernel(autoload=True).load()
    status, error = statuses(kernel)["broken"]
    assert status == "failed"
    assert error == "import failed: ModuleNotFoundError: No module named 'not_a_real_module_xyz'"
    assert statuses(kernel)["tool-echo"][0] == "ok"


def test_strict_mode_stops_on_a_broken_plugin(fake_site, make_kernel) -> None:
    fake_site("vendo-broken", {"vendo_broken": "1/0\n"}, {"broken": "vendo_broken"})
    kernel = make_kernel(autoload=True, controls={"strict": True})
    with pytest.raises(StartupError, match=r"strict mode: plugin 'broken' failed: import failed: ZeroDivisionError"):
        kernel.load()


def test_misspelled_hook_is_reported_with_a_suggestion(make_kernel) -> None:
    typo = types.SimpleNamespace(vendo_startupp=hookimpl(lambda kernel: None))
    kernel = make_kernel({"typo": typo}).load()
    assert statuses(kernel)["typo"] == (
        "failed",
        "implements unknown hook vendo_startupp (did you mean vendo_startup?)",
    )
    assert kernel.pm.get_plugin("typo") is None
    kernel.pm.check_pending()


def test_unmarked_vendo_function_is_still_a_hook(make_kernel) -> None:
    """A forgotten @hookimpl never hides an implementation (nor a typo in its name)."""
    module = types.ModuleType("unmarked")
    calls = []

    def vendo_register_tools(register):
        calls.append(register)

    module.vendo_register_tools = vendo_register_tools
    module.vendo_register_toolz = lambda register: None
    kernel = make_kernel({"unmarked": module}).load()
    assert statuses(kernel)["unmarked"] == (
        "failed",
        "implements unknown hook vendo_register_toolz (did you mean vendo_register_tools?)",
    )
    del module.vendo_register_toolz
    kernel = make_kernel({"unmarked": module}).load()
    assert statuses(kernel)["unmarked"][0] == "ok"
    assert len(calls) == 1  # the failed plugin was never called


def test_wrong_hook_parameters_are_reported(make_kernel) -> None:
    bad = types.SimpleNamespace(vendo_startup=hookimpl(lambda kernel, request: None))
    kernel = make_kernel({"bad": bad}).load()
    status, error = statuses(kernel)["bad"]
    assert status == "failed"
    assert error.startswith("hook signature does not match its spec:")
    assert "request" in error


def test_hook_wrappers_are_refused(make_kernel) -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def vendo_migrations(self):
            return (yield)

    kernel = make_kernel({"wrapper": Wrapper()}).load()
    assert statuses(kernel)["wrapper"] == ("failed", "vendo_migrations: hook wrappers are not supported on Vendo hooks")


@pytest.mark.parametrize(
    ("declared", "status", "error"),
    [
        (">=1.0,<2", "ok", None),
        (">=2", "incompatible", "supports vendo API >=2, but this kernel offers API 1.0"),
        ("not a range", "incompatible", "invalid vendo_api range 'not a range' (write e.g. '>=1.0,<2')"),
    ],
)
def test_declared_api_range_is_checked(make_kernel, declared, status, error) -> None:
    plugin = types.SimpleNamespace(vendo_api=declared, vendo_migrations=hookimpl(lambda: None))
    kernel = make_kernel({"ranged": plugin}).load()
    assert statuses(kernel)["ranged"] == (status, error)
    assert (kernel.pm.get_plugin("ranged") is not None) == (status == "ok")


def test_two_plugins_with_one_name_second_fails(fake_site, make_kernel) -> None:
    fake_site("vendo-echo", {"vendo_echo": GOOD}, {"echo": "vendo_echo"})
    explicit = types.SimpleNamespace(vendo_migrations=hookimpl(lambda: None))
    kernel = make_kernel({"echo": explicit}, autoload=True).load()
    found = [p for p in kernel.plugins if p.name == "echo"]
    assert [p.status for p in found] == ["ok", "failed"]
    assert found[1].error == "another plugin already uses the name 'echo'"


def test_each_kernel_has_its_own_plugin_manager(make_kernel) -> None:
    one = make_kernel({"x": types.SimpleNamespace(vendo_migrations=hookimpl(lambda: None))}).load()
    two = make_kernel().load()
    assert one.pm is not two.pm
    assert one.pm.get_plugin("x") is not None and two.pm.get_plugin("x") is None


def test_nothing_loads_until_load_is_called(fake_site, make_kernel) -> None:
    import sys

    fake_site("vendo-lazy", {"vendo_lazy": GOOD}, {"lazy": "vendo_lazy"})
    kernel = make_kernel(autoload=True)
    assert kernel.plugins == [] and "vendo_lazy" not in sys.modules
    kernel.load()
    assert "vendo_lazy" in sys.modules
    kernel.load()  # idempotent
    assert [p.name for p in kernel.plugins].count("lazy") == 1


def test_trace_logs_every_hook_call(make_kernel, caplog: pytest.LogCaptureFixture) -> None:
    plugin = types.SimpleNamespace(vendo_register_tools=hookimpl(lambda register: None))
    with caplog.at_level(logging.INFO, logger="vendo.hooks"):
        make_kernel({"traced": plugin}, controls={"trace": True}).load()
    assert any("hook vendo_register_tools plugin=traced" in r.getMessage() for r in caplog.records)


def test_hook_timings_reach_prometheus(make_kernel) -> None:
    plugin = types.SimpleNamespace(vendo_register_tools=hookimpl(lambda register: None))
    kernel = make_kernel({"timed": plugin}).load()
    text = kernel.metrics.render().decode()
    assert 'vendo_hook_duration_seconds_count{hook="vendo_register_tools",plugin="timed"} 1.0' in text
    assert 'vendo_plugins{status="ok"} 2.0' in text


@pytest.mark.parametrize(
    ("function", "error"),
    [
        (lambda kernel, settings=None: None,
         "vendo_startup: parameter 'settings' has a default and would never be filled; remove the default"),
        (lambda *args: None, "vendo_startup: *args/**kwargs are never filled; name the parameters you need"),
        (lambda kernel, *, settings: None,
         "vendo_startup: keyword-only parameter 'settings' is never filled; make it positional"),
    ],
)
def test_parameters_the_kernel_never_fills_are_refused(make_kernel, function, error) -> None:
    plugin = types.SimpleNamespace(vendo_startup=hookimpl(function))
    kernel = make_kernel({"odd": plugin}).load()
    assert statuses(kernel)["odd"] == ("failed", error)


def test_async_implementation_of_a_synchronous_hook_is_refused(make_kernel) -> None:
    async def vendo_register_tools(register):
        register("never", None)

    kernel = make_kernel({"async-register": types.SimpleNamespace(vendo_register_tools=vendo_register_tools)}).load()
    assert statuses(kernel)["async-register"] == (
        "failed", "vendo_register_tools: is called synchronously, so an async def implementation would never run"
    )
