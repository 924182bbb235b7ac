"""Start-up and shut-down: hooks awaited in order, failures stop cleanly and readably."""

from __future__ import annotations

import pytest

from vendo import DatabaseError, PluginSettings, StartupError, hookimpl
from vendo.db import migrations

from kernel_support import provider_for


class Recorder:
    def __init__(self, name: str, log: list[str], fail: Exception | None = None) -> None:
        self.name, self.log, self.fail = name, log, fail

    @hookimpl
    async def vendo_startup(self, kernel, settings):
        self.log.append(f"start {self.name}")
        if self.fail is not None:
            raise self.fail

    @hookimpl
    def vendo_shutdown(self, kernel):
        self.log.append(f"stop {self.name}")


@pytest.fixture
def ready(make_kernel, tmp_path):
    def factory(plugins, **kw):
        kernel = make_kernel(plugins, **kw).load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        return kernel

    return factory


async def test_startup_and_shutdown_run_in_order_and_reverse(ready) -> None:
    log: list[str] = []
    kernel = ready({"a": Recorder("a", log), "b": Recorder("b", log)})
    await kernel.start()
    await kernel.stop()
    assert log == ["start b", "start a", "stop a", "stop b"]  # pluggy calls the latest registered first


async def test_plugin_stops_startup_with_a_readable_message(ready) -> None:
    log: list[str] = []
    kernel = ready({"a": Recorder("a", log), "b": Recorder("b", log, StartupError("license server key missing"))})
    with pytest.raises(StartupError, match="plugin 'b' stopped start-up: license server key missing"):
        await kernel.start()
    assert log == ["start b"]  # a plugin whose start-up failed is not shut down


async def test_crash_in_startup_shuts_down_those_started(ready) -> None:
    log: list[str] = []
    kernel = ready({"a": Recorder("a", log, RuntimeError("boom")), "b": Recorder("b", log)})
    with pytest.raises(StartupError, match=r"plugin 'a' failed in vendo_startup: RuntimeError: boom"):
        await kernel.start()
    assert log == ["start b", "start a", "stop b"]


async def test_shutdown_errors_do_not_stop_other_plugins(ready, caplog) -> None:
    log: list[str] = []

    class BadStop(Recorder):
        @hookimpl
        def vendo_shutdown(self, kernel):
            raise RuntimeError("socket already closed")

    kernel = ready({"a": Recorder("a", log), "b": BadStop("b", log)})
    await kernel.start()
    await kernel.stop()
    assert log == ["start b", "start a", "stop a"]
    assert "plugin 'b' failed in vendo_shutdown: RuntimeError: socket already closed" in caplog.text


async def test_startup_gets_the_plugins_own_settings(ready) -> None:
    class Settings(PluginSettings):
        greeting: str = "hello"

    seen = []

    class WithSettings:
        @hookimpl
        def vendo_settings_model(self):
            return Settings

        @hookimpl
        def vendo_startup(self, settings):
            seen.append(settings.greeting)

    kernel = ready({"greeter": WithSettings()})
    await kernel.start()
    await kernel.stop()
    assert seen == ["hello"]


async def test_start_refuses_a_database_behind_its_migrations(make_kernel) -> None:
    kernel = make_kernel({})
    with pytest.raises(DatabaseError, match=r"does not exist yet: run `vendo db upgrade`"):
        await kernel.start()


async def test_start_refuses_ambiguous_providers(ready) -> None:
    class Two:
        @hookimpl
        def vendo_register_license_backends(self, register):
            register("one", provider_for("license", "one"))
            register("two", provider_for("license", "two"))

    kernel = ready({"two": Two()})
    with pytest.raises(StartupError, match="several license providers are installed"):
        await kernel.start()
