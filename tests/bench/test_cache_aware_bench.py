"""``python -m bench.cache_aware --quick`` runs end to end in production mode and reports every
figure it promises, for both strategies and both workloads. No assertion on speed: the figures
belong to the benchmark (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT


def test_quick_run_reports_both_strategies_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "cache-aware.json"
    run = subprocess.run([sys.executable, "-m", "bench.cache_aware", "--quick", "--json",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3])
            for line in run.stdout.splitlines() if line.startswith("| ")}
    assert {(w, s) for w in ("multi-turn", "hot-spot")
            for s in ("balanced", "cache_aware")} <= rows
    result = json.loads(out.read_text())
    assert result["meta"]["mode"] == "gunicorn + gevent, 2 workers, Redis"
    assert {"slots", "prefill_per_char", "cache_chars", "block_chars"} <= set(result["meta"]["sim"])
    for strategy in ("balanced", "cache_aware"):
        figures = result["strategies"][strategy]
        assert figures["log_problems"]["traceback"] == 0
        for workload in ("multi-turn", "hot-spot"):
            cell = figures[workload]
            assert cell["errors"] == 0 and cell["ok"] == cell["requests"] > 0
            assert {"ttft_p50_ms", "ttft_p99_ms", "rps", "cache_hit_ratio"} <= set(cell)
            assert sum(s["requests"] for s in cell["per_server"]) == cell["requests"]
    # the strategy under test really decided (the balanced gateway reports no such decisions)
    assert result["strategies"]["balanced"]["hot-spot"]["router"]["decisions"] == 0
    assert result["strategies"]["cache_aware"]["multi-turn"]["router"]["mean_prefix_match"] > 0
