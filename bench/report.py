"""The printed table: one block per figure, one row per server mode, direct beside gateway."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _rows(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    meta = result["meta"]
    modes: dict[str, Any] = result["modes"]
    out = [f"machine: {meta['cpu']} x{meta['cores']}, Python {meta['python']}, "
           f"commit {meta['commit']}, load avg at start {_f(meta['loadavg_start'][0], 2)}",
           f"loader: {meta['loader']}"]

    rows = []
    for mode, m in modes.items():
        for c, cell in m["closed"].items():
            d, g = cell["direct"], cell["gateway"]
            rows.append([mode, c, _f(d["rps"]), _f(g["rps"]), _f(cell.get("rps_ratio"), 2),
                         _f(d["latency_p50_ms"], 2), _f(g["latency_p50_ms"], 2),
                         _f(cell.get("added_latency_p50_ms"), 2),
                         _f(cell.get("added_latency_p99_ms"), 2), str(g["errors"])])
    out += ["", "Non-stream, closed loop (ms; 'added' = gateway minus direct)",
            _rows(["mode", "conc", "direct r/s", "gw r/s", "ratio", "direct p50", "gw p50",
                   "added p50", "added p99", "errors"], rows)]

    rows = []
    for mode, m in modes.items():
        cell = m["open"]
        d, g = cell["direct"], cell["gateway"]
        rows.append([mode, _f(cell["offered_rps"], 0), _f(g["rps"]), _f(d["latency_p50_ms"], 2),
                     _f(g["latency_p50_ms"], 2), _f(d["latency_p99_ms"], 2),
                     _f(g["latency_p99_ms"], 2), _f(g["from_due_p99_ms"], 2),
                     _f(g["dispatch_lag_p99_ms"], 2), str(g["errors"])])
    out += ["", "Non-stream, open loop at a fixed offered rate (ms from send; 'due' = from the "
            "scheduled time)",
            _rows(["mode", "offered", "gw r/s", "direct p50", "gw p50", "direct p99", "gw p99",
                   "gw due p99", "lag p99", "errors"], rows)]

    rows = []
    for mode, m in modes.items():
        cell = m["stream"]
        d, g = cell["direct"], cell["gateway"]
        rows.append([mode, _f(d["ttfb_p50_ms"], 2), _f(g["ttfb_p50_ms"], 2),
                     _f(cell.get("added_ttfb_p50_ms"), 2), _f(cell.get("added_ttfb_p99_ms"), 2),
                     _f(d["latency_p50_ms"], 1), _f(g["latency_p50_ms"], 1),
                     _f(cell.get("latency_mean_ratio"), 4), str(g["errors"])])
    out += ["", "Streams (time to first byte, total time; ratio = gateway/direct mean total)",
            _rows(["mode", "direct ttfb", "gw ttfb", "added p50", "added p99", "direct total",
                   "gw total", "ratio", "errors"], rows)]

    rows = []
    for mode, m in modes.items():
        s = m.get("slow_streams")
        if s:
            g = s["gateway"]
            rows.append([mode, str(s["streams"]), _f(s["seconds"]), str(g["ok"]),
                         str(g["peak_concurrent"]), str(g["errors"]), str(m["leaked_leases"]),
                         _f(g["latency_max_ms"] / 1000 if g["latency_max_ms"] else None, 2)])
    if rows:
        out += ["", "Slow concurrent streams held by one instance",
                _rows(["mode", "streams", "each s", "completed", "peak", "errors", "leaked",
                       "longest s"], rows)]

    rows = []
    for mode, m in modes.items():
        r = m["rss_mb"]
        rows.append([mode, _mb(r.get("start")), _mb(r.get("rest")), _mb(r.get("load")),
                     _mb(r.get("slow_streams")), _mb(r.get("before_soak")),
                     _mb(r.get("after_soak")), _mb(r.get("growth_pct"))])
    out += ["", "RSS per worker, MB (growth % = after soak vs before soak)",
            _rows(["mode", "start", "rest", "load", "slow", "pre-soak", "post-soak", "growth %"],
                  rows)]
    problems = {mode: {k: v for k, v in m.get("log_problems", {}).items() if v}
                for mode, m in modes.items()}
    out += ["", f"errors in total: {result['errors']}; leaked leases: {result['leaked_leases']}",
            "gateway log lines of note: " + (", ".join(
                f"{mode} {p}" for mode, p in problems.items() if p) or "none")]
    return "\n".join(out)


def _mb(values: list[float | None] | None) -> str:
    if not values:
        return "-"
    return "/".join(_f(v) for v in values)
