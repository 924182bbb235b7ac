"""Typed facade over ``pm.hook``: how the kernel calls its plugins.

pluggy is synchronous: an ``async def`` implementation returns a coroutine. The facade
calls implementations one by one (in pluggy's order: ``tryfirst`` first, then the most
recently registered), passes each the arguments it asks for plus its own ``settings``,
awaits coroutines where a hook may be async, attributes every failure to its plugin,
and records each call's duration (for tracing and Prometheus).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import anyio.to_thread

from vendo.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from pluggy import HookImpl

    from vendo.events import Event
    from vendo.plugins import VendoPluginManager

log = logging.getLogger("vendo.hooks")

Observer = Callable[[str, str, float], None]


class HookCallError(PluginError):
    """A plugin's hook implementation raised; ``plugin``, ``hook`` and ``cause`` say which and why."""

    def __init__(self, plugin: str, hook: str, cause: BaseException) -> None:
        text = str(cause).strip().splitlines()
        reason = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
        super().__init__(f"plugin '{plugin}' failed in {hook}: {reason}")
        self.plugin = plugin
        self.hook = hook
        self.cause = cause


class Hooks:
    """Calls plugins' hook implementations on behalf of a kernel."""

    def __init__(self, pm: VendoPluginManager, settings_of: Callable[[str], Any], trace: bool = False) -> None:
        self._pm = pm
        self._settings_of = settings_of
        self._trace = trace
        self._observers: list[Observer] = []

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(hook, plugin, seconds)`` after every hook call (metrics)."""
        self._observers.append(observer)

    def implementations(self, hook_name: str) -> Iterator[tuple[str, HookImpl]]:
        """``(plugin name, implementation)`` pairs of a hook, in call order."""
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            yield impl.plugin_name, impl

    def implementers(self, hook_name: str) -> list[str]:
        """Names of the plugins implementing a hook, in call order."""
        return [name for name, _ in self.implementations(hook_name)]

    def _args(self, impl: HookImpl, plugin: str, kwargs: dict[str, Any]) -> list[Any]:
        argnames = impl.argnames
        if "settings" in argnames and "settings" not in kwargs:
            settings = self._settings_of(plugin)
            return [settings if name == "settings" else kwargs[name] for name in argnames]
        return [kwargs[name] for name in argnames]

    def _observe(self, hook: str, plugin: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        if self._trace:
            log.info("hook %s plugin=%s %.3f ms", hook, plugin, elapsed * 1000)
        for observer in self._observers:
            observer(hook, plugin, elapsed)

    def call_impl(self, hook: str, plugin: str, impl: HookImpl, **kwargs: Any) -> Any:
        """Call one implementation synchronously; errors become :class:`HookCallError`."""
        args = self._args(impl, plugin, kwargs)  # a missing argument is the caller's bug, not the plugin's
        started = time.perf_counter()
        try:
            return impl.function(*args)
        except Exception as exc:
            raise HookCallError(plugin, hook, exc) from exc
        finally:
            self._observe(hook, plugin, started)

    async def acall_impl(self, hook: str, plugin: str, impl: HookImpl, **kwargs: Any) -> Any:
        """Call one implementation, awaiting it if it is async."""
        args = self._args(impl, plugin, kwargs)
        started = time.perf_counter()
        try:
            result = impl.function(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:
            raise HookCallError(plugin, hook, exc) from exc
        finally:
            self._observe(hook, plugin, started)

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a synchronous hook; ``(plugin, result)`` pairs,
        ``None`` results left out. The first failure stops the call."""
        results = []
        clock = time.perf_counter
        for impl in reversed(getattr(self._pm.hook, hook).get_hookimpls()):  # inlined: a hot path
            plugin = impl.plugin_name
            args = self._args(impl, plugin, kwargs)
            started = clock()
            try:
                result = impl.function(*args)
            except Exception as exc:
                raise HookCallError(plugin, hook, exc) from exc
            finally:
                self._observe(hook, plugin, started)
            if result is not None:
                results.append((plugin, result))
        return results

    def call_plugin(self, hook: str, plugin: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of a synchronous hook (``None`` if it has none)."""
        for name, impl in self.implementations(hook):
            if name == plugin:
                return self.call_impl(hook, plugin, impl, **kwargs)
        return None

    # -- typed entry points -------------------------------------------------

    def settings_model(self, plugin: str) -> Any:
        """The settings model a plugin declares through ``vendo_settings_model``, or ``None``."""
        return self.call_plugin("vendo_settings_model", plugin)

    def migrations(self) -> list[tuple[str, Any]]:
        """``(plugin, directory)`` for every plugin declaring Alembic revisions."""
        return self.call("vendo_migrations")

    async def shutdown(self, kernel: Any, plugins: list[str] | None = None) -> None:
        """Run ``vendo_shutdown`` in reverse start order; failures are logged, not raised."""
        impls = dict(self.implementations("vendo_shutdown"))
        order = [p for p in reversed(plugins)] if plugins is not None else list(reversed(list(impls)))
        for plugin in order:
            impl = impls.get(plugin)
            if impl is None:
                continue
            try:
                await self.acall_impl("vendo_shutdown", plugin, impl, kernel=kernel)
            except HookCallError as exc:
                log.error("%s", exc)

    def subscribers(self) -> list[str]:
        """Plugins implementing ``vendo_on_event``, in call order."""
        return self.implementers("vendo_on_event")

    async def deliver(self, plugin: str, event: Event, kernel: Any) -> None:
        """Hand ``event`` to one subscriber, awaiting it if async.

        :raises HookCallError: when the subscriber raises (the outbox retries it).
        :raises LookupError: when ``plugin`` no longer subscribes.
        """
        for name, impl in self.implementations("vendo_on_event"):
            if name != plugin:
                continue
            if inspect.iscoroutinefunction(impl.function):
                await self.acall_impl("vendo_on_event", plugin, impl, event=event, kernel=kernel)
            else:  # keep the event loop free while a synchronous subscriber works
                await anyio.to_thread.run_sync(
                    lambda: self.call_impl("vendo_on_event", plugin, impl, event=event, kernel=kernel)
                )
            return
        raise LookupError(f"plugin '{plugin}' does not implement vendo_on_event")
