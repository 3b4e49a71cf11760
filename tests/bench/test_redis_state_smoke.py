"""``python -m bench.redis_state`` runs end to end on a small scale and reports every figure.

No assertion on a speed figure: only the shape, every request served, the window's size bound
(61 one-second buckets whatever the traffic) and the Redis commands per served request (SPEC §15:
at most ~10).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llm_router_api.auth.limits import BUCKETS
from tests.support.procs import ROOT


def test_redis_state_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "redis-state.json"
    run = subprocess.run([sys.executable, "-m", "bench.redis_state", "--windows", "0,2000",
                          "--admissions", "100", "--duration", "2", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Slot queue" in run.stdout
    result = json.loads(out.read_text())
    rows = result["admission"]
    assert {(r["window"], r["store"]) for r in rows} >= {(0, "redis"), (2000, "memory")}
    assert all(r["window_fields"] <= BUCKETS for r in rows if r["store"] == "redis")
    assert max(r["window_fields"] for r in rows if r["store"] == "redis") >= BUCKETS - 2
    queue = result["queue"]
    assert set(queue["statuses"]) == {"200"} and queue["served"] > 0
    assert 0 < queue["redis_commands_per_served"] <= 10
    assert result["memory"]["kb_per_1000"] > 0
