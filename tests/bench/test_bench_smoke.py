"""The benchmark runs end to end in ``--quick`` mode and writes the figures it promises.

One short run (gevent mode, sub-second cells) for the whole module; no assertion on any speed
figure, only on the shape of the JSON, zero errors and zero leaked leases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.client import TargetError, check_loopback
from tests.support.procs import ROOT

SMOKE_ARGS = ["--quick", "--modes", "gevent", "--duration", "0.5", "--rate", "50",
              "--warmup", "10", "--slow-streams", "10", "--slow-seconds", "1", "--soak", "1"]
SUMMARY_KEYS = {"requests", "ok", "errors", "rps", "latency_p50_ms", "latency_p99_ms"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    run = subprocess.run([sys.executable, "-m", "bench.run", *SMOKE_ARGS, "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Non-stream, closed loop" in run.stdout
    return dict(json.loads(Path(out).read_text()))


def test_quick_run_has_every_figure_and_no_errors(result: dict[str, Any]) -> None:
    assert result["errors"] == 0
    assert result["leaked_leases"] == 0
    assert {"cpu", "cores", "python", "loader", "args"} <= set(result["meta"])
    mode = result["modes"]["gevent"]
    assert set(mode["closed"]) == {"1", "8", "32"}
    cells = [*mode["closed"].values(), mode["open"], mode["stream"], mode["slow_streams"]]
    for cell in cells:
        for side in ("direct", "gateway"):
            assert set(cell[side]) >= SUMMARY_KEYS
            assert cell[side]["errors"] == 0 and cell[side]["ok"] > 0
        assert "added_latency_p50_ms" in cell
    assert {"added_ttfb_p50_ms", "added_ttfb_p99_ms", "latency_mean_ratio"} <= set(mode["stream"])
    assert mode["slow_streams"]["gateway"]["ok"] == 10
    assert mode["soak"]["errors"] == 0
    rss = mode["rss_mb"]
    assert {"start", "rest", "load", "slow_streams", "before_soak", "after_soak",
            "growth_pct"} <= set(rss)
    assert len(rss["rest"]) == len(mode["worker_pids"]) >= 1
    assert all(isinstance(v, float) and v > 0 for v in rss["after_soak"])


def test_loader_refuses_targets_off_this_machine() -> None:
    check_loopback("127.0.0.1")
    for host in ("10.0.0.1", "192.168.1.5", "example.com"):
        with pytest.raises(TargetError):
            check_loopback(host)


def test_production_profile_compares_sides_in_one_run(tmp_path: Path) -> None:
    """``--compare`` with the working tree (Redis + metrics on) and the featureless floor
    relay: every headline figure for both sides, CPU read from /proc, no error, no lease
    left behind (never the speed figures)."""
    out = tmp_path / "prod.json"
    run = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--compare", ".",
                          "floor", "--duration", "0.5", "--warmup", "10", "--rounds", "1",
                          "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Production profile" in run.stdout
    result = json.loads(out.read_text())
    assert result["errors"] == 0 and result["leaked_leases"] == 0
    assert set(result["sides"]) == {".", "floor"}
    gateway = result["sides"]["."]
    assert gateway["best"]["plain_c32.cpu_ms_per_request"] > 0
    assert gateway["best"]["paced.cpu_ms_per_chunk"] > 0
    assert gateway["best"]["plain_c32.redis_commands_per_request"] > 0  # Redis is in use
    assert {"added_ttfb_p50_ms", "latency_mean_ratio"} <= set(gateway["rounds"][0]["gateway"]
                                                              ["paced"])
    assert result["sides"]["floor"]["best"]["plain_c32.redis_commands_per_request"] == 0
