"""Plugin dispatch overhead: what calling a hook costs, raw pluggy vs Vendo's facade.

Run: ``uv run python benchmarks/bench_hook_dispatch.py`` (``--quick`` for a smoke run).

Every plugin implements ``vendo_on_event(event, kernel)`` synchronously and returns a
constant, so the figures are pure dispatch cost. For 1 and for 10 registered plugins:

- ``plain call``: one plain Python function with the same signature (the floor);
- ``raw pluggy``: ``pm.hook.vendo_on_event(event=..., kernel=..., settings=None)``;
- ``kernel.hooks.call``: Vendo's facade (per-plugin arguments, error attribution and
  the Prometheus hook-duration observer), on a kernel built with autoload off;
- ``hooks.call, no observer``: the same facade without the metrics observer, to show
  how much of the facade's cost is the Prometheus histogram.

Each figure is the best of several repeats (``time.perf_counter``), in calls per second
of the whole hook call (all implementations), with its ratio to the plain call and to
raw pluggy for the same number of plugins. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import timeit
from datetime import datetime, timezone
from typing import Any

import pluggy

from vendo import Event, hookimpl
from vendo.config import load_settings
from vendo.hooks import Hooks
from vendo.kernel import Kernel


class BenchPlugin:
    """A plugin doing nothing but answering the hook."""

    @hookimpl
    def vendo_on_event(self, event: Event, kernel: Kernel) -> int:
        return 1


def plain(event: Event, kernel: Kernel) -> int:
    """The baseline: the same function, called directly."""
    return 1


def build_kernel(count: int) -> Kernel:
    plugins = {f"bench-{i}": BenchPlugin() for i in range(count)}
    kernel = Kernel(load_settings(overrides={"plugins": {"autoload": False}}), plugins=plugins).load()
    broken = [p for p in kernel.plugins if p.status != "ok"]
    if broken:
        raise SystemExit(f"benchmark plugins failed to load: {[(p.name, p.error) for p in broken]}")
    return kernel


def measure(stmt: str, namespace: dict[str, Any], quick: bool, repeat: int) -> float:
    """Best seconds per execution of ``stmt`` over ``repeat`` runs."""
    timer = timeit.Timer(stmt, globals=namespace, timer=time.perf_counter)
    if quick:
        number, repeat = 200, 2
    else:
        number, _ = timer.autorange()  # enough loops for >= 0.2 s per repeat
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny number of iterations (smoke test)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per figure; the best is kept (default 7)")
    args = parser.parse_args(argv)

    event = Event(id="0" * 32, type="bench.ping", payload={}, created_at=datetime.now(timezone.utc))
    rows: list[tuple[str, int, float]] = []  # (case, plugins, seconds per call)

    plain_seconds = measure("plain(event=event, kernel=None)", {"plain": plain, "event": event}, args.quick, args.repeat)
    for count in (1, 10):
        kernel = build_kernel(count)
        try:
            hook = kernel.pm.hook.vendo_on_event
            facade = kernel.hooks.call
            # Same work on both paths: every implementation called once, every result kept.
            if hook(event=event, kernel=kernel, settings=None) != [1] * count:
                raise SystemExit("raw pluggy did not call every benchmark plugin")
            if [r for _, r in facade("vendo_on_event", event=event, kernel=kernel)] != [1] * count:
                raise SystemExit("kernel.hooks.call did not call every benchmark plugin")
            bare = Hooks(kernel.pm, kernel.plugin_settings).call  # no observer: no metrics
            namespace = {"hook": hook, "facade": facade, "bare": bare, "event": event, "kernel": kernel}
            pluggy_seconds = measure(
                "hook(event=event, kernel=kernel, settings=None)", namespace, args.quick, args.repeat
            )
            facade_seconds = measure(
                "facade('vendo_on_event', event=event, kernel=kernel)", namespace, args.quick, args.repeat
            )
            bare_seconds = measure(
                "bare('vendo_on_event', event=event, kernel=kernel)", namespace, args.quick, args.repeat
            )
        finally:
            kernel.close()
        rows.append(("raw pluggy pm.hook", count, pluggy_seconds))
        rows.append(("kernel.hooks.call", count, facade_seconds))
        rows.append(("hooks.call, no observer", count, bare_seconds))

    mode = "quick (figures meaningless)" if args.quick else f"best of {args.repeat}"
    print(
        f"hook dispatch: vendo_on_event, Python {platform.python_version()}, pluggy {pluggy.__version__}, "
        f"{mode}"
    )
    header = f"{'case':<24} {'plugins':>7} {'calls/s':>12} {'us/call':>9} {'ratio vs plain':>15} {'ratio vs pluggy':>16}"
    print(header)
    print("-" * len(header))
    print(f"{'plain function call':<24} {1:>7} {1 / plain_seconds:>12,.0f} {plain_seconds * 1e6:>9.3f} {1.0:>15.1f} {'-':>16}")
    pluggy_of = {count: seconds for case, count, seconds in rows if case.startswith("raw pluggy")}
    for case, count, seconds in rows:
        print(
            f"{case:<24} {count:>7} {1 / seconds:>12,.0f} {seconds * 1e6:>9.3f} "
            f"{seconds / plain_seconds:>15.1f} {seconds / pluggy_of[count]:>16.2f}"
        )
    print("ratio = time per call / baseline time per call (higher is slower); one call runs every plugin's implementation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
