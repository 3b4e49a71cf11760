"""``python -m bench.where RESULT.json``: where each microsecond of a request goes.

Reads the py-spy speedscope profiles a ``bench.run --production --profile`` run wrote (every
worker of each side) and splits the side's measured CPU per request (``plain_c32``) or per
stream (``paced``) over the parts of the gateway, by the share of the workers' samples whose
stack passes through each part. A sample is given to the first part in ``PARTS`` its stack
touches (a Redis call's socket send is Redis, not "socket writes to the caller").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

#: (part, substrings of a frame's "name file" that put a sample in it), first match wins.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Redis round trips (lease, release)", ("redis_link.py", "/redis/")),
    ("upstream HTTP (urllib3, http.client)", ("urllib3/", "http/client.py", "transport.py")),
    ("writes to the caller (gunicorn Response)", ("Response.write", "Response.close",
                                                 "Response.send_headers", "_emit_body")),
    ("Prometheus metrics", ("prometheus_client",)),
    ("pydantic validation", ("pydantic",)),
    ("request parsing (gunicorn)", ("gunicorn/http/",)),
    ("access log, request hooks (observe, logs)", ("web/observe.py", "web/logs.py")),
    ("the gateway's own code", ("llm_router_api/",)),
    ("Flask + werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn worker, gevent hub, other", ("",)),
)


OWN, FLASK = "the gateway's own code", "Flask + werkzeug"
HOOKS = "access log, request hooks (observe, logs)"


def classify(names: list[str]) -> str:
    """The part of one sample's stack (root first). Between the request hooks, the rest of our
    code and Flask the frame nearest the leaf decides: our view runs inside Flask, which runs
    inside our middleware, and a stream's whole relay runs inside the hooks' counting body."""
    for part, needles in PARTS:
        if part in (HOOKS, OWN, FLASK):
            for name in reversed(names):
                if "web/observe.py" in name or "web/logs.py" in name:
                    return HOOKS
                if "llm_router_api/" in name:
                    return OWN
                if "flask/" in name or "werkzeug/" in name:
                    return FLASK
            continue
        if any(n in name for n in needles for name in names):
            return part
    return PARTS[-1][0]


def shares(paths: list[Path]) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for path in paths:
        data = json.loads(path.read_text())
        frames = [f"{f['name']} {f.get('file', '')}" for f in data["shared"]["frames"]]
        for profile in data["profiles"]:
            for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
                names = [frames[i] for i in stack]
                total += weight
                counts[classify(names)] += weight
    return counts, total


def table(result: dict[str, Any], cell: str) -> str:
    sides = result["sides"]
    per = "request" if cell == "plain_c32" else "stream"
    columns: list[tuple[str, Counter[str], int, float]] = []
    for label, side in sides.items():
        files = [Path(p) for p in side.get("profiles", [])
                 if f"-{cell}-worker" in p and p.endswith(".json")]
        counts, total = shares(files)
        cpu_ms = side["best"].get("plain_c32.cpu_ms_per_request")
        if cell == "paced":
            chunk = side["best"].get("paced.cpu_ms_per_chunk")
            frames = result.get("frames") or 20
            cpu_ms = None if chunk is None else chunk * frames
        if total and cpu_ms:
            columns.append((label, counts, total, cpu_ms * 1000))
    lines = [f"| µs per {per} ({cell}) | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for part, _ in PARTS:
        row = [f"{c[1][part] / c[2] * c[3]:.0f}" for c in columns]
        lines.append(f"| {part} | " + " | ".join(row) + " |")
    lines.append("| **total (measured CPU, master + workers)** | "
                 + " | ".join(f"**{c[3]:.0f}**" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.where", description=__doc__)
    p.add_argument("result", type=Path, help="the JSON of a --production --profile run")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    print(table(result, "plain_c32"))
    print()
    print(table(result, "paced"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
