"""Rate limits hold across processes: several OS processes sharing one PostgreSQL database
(the SQL counter store) admit exactly the limit in total, not the limit per process.

Each worker builds its own kernel on the shared database with the same frozen instant,
waits at a barrier (a line on its stdin) so that all of them hit at once, and reports how
many hits were allowed. The limits are seed 002's Free plan (examples/catalogs/gilo.toml):
60 a minute and 1000 a day.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from support import vendo_env
from vendo import Kernel, load_settings
from vendo.db import migrations
from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.models import Counter

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "catalogs" / "gilo.toml"
WORKERS = 4
HITS = 30  # each: 120 attempts in all against a limit of 60 a minute

WORKER = """
import json
import sys
from datetime import datetime

from vendo import Kernel, load_settings

url, data_dir, moment, hits, subject = sys.argv[1:6]
now = datetime.fromisoformat(moment)
kernel = Kernel(load_settings(overrides={"database_url": url, "data_dir": data_dir,
                                         "plugins": {"autoload": False}}), clock=lambda: now)
kernel.load()
kernel.providers.configure({})
kernel.rate_limits.peek(subject)  # connected, catalog read: ready to hit
print("ready", flush=True)
sys.stdin.readline()
allowed = sum(kernel.rate_limits.hit(subject).allowed for _ in range(int(hits)))
print(json.dumps({"allowed": allowed, "refused": int(hits) - allowed}), flush=True)
kernel.close()
"""


def run_round(script: Path, url: str, data_dir: Path, moment: datetime, subject: str) -> list[dict[str, int]]:
    """Start the workers, release them together, return what each one reports."""
    workers = [subprocess.Popen([sys.executable, str(script), url, str(data_dir), moment.isoformat(), str(HITS),
                                 subject], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=vendo_env())
               for _ in range(WORKERS)]
    try:
        for worker in workers:
            line = worker.stdout.readline()
            assert line.strip() == "ready", f"worker did not start: {line!r} {worker.stderr.read()}"
        for worker in workers:  # every worker is connected and waiting: release them together
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_a_limit_of_60_a_minute_admits_60_in_total_across_processes(vendo_postgres_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    kernel = Kernel(load_settings(overrides={"database_url": vendo_postgres_url, "data_dir": str(data_dir),
                                             "plugins": {"autoload": False}}))
    try:
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.providers.configure({})
        kernel.entitlements.load_catalog(load_catalog(CATALOG))
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        subject = "ws_shared"  # no subscription: the Free plan, 60 a minute and 1000 a day
        first = datetime(2026, 5, 4, 12, 0, 15, tzinfo=timezone.utc)

        reports = run_round(script, vendo_postgres_url, data_dir, first, subject)
        assert sum(r["allowed"] for r in reports) == 60, reports
        assert sum(r["refused"] for r in reports) == WORKERS * HITS - 60
        minute, day = _counters(kernel, subject, first)
        assert (minute, day) == (60, 60)  # the refused hits counted in neither window

        later = first + timedelta(minutes=1)  # a new minute, the same day
        reports = run_round(script, vendo_postgres_url, data_dir, later, subject)
        assert sum(r["allowed"] for r in reports) == 60, reports
        assert _counters(kernel, subject, later) == (60, 120)
    finally:
        kernel.close()


def _counters(kernel: Kernel, subject: str, moment: datetime) -> tuple[int, int]:
    epoch = int(moment.timestamp())
    keys = [f"rl:sub:{subject}:minute:{epoch - epoch % 60}", f"rl:sub:{subject}:day:{epoch - epoch % 86400}"]
    with kernel.session() as session:
        found = dict(session.execute(select(Counter.key, Counter.value).where(Counter.key.in_(keys))).all())
    return found.get(keys[0], 0), found.get(keys[1], 0)
