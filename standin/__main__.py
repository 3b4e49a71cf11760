"""``python -m standin``: run one stand-in in the foreground until SIGTERM/SIGINT.

Once bound it prints ``standin <name> listening on http://HOST:PORT`` (flushed);
wait for that line before sending requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .behaviour import MODES, Behaviour
from .server import StandIn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--name", default="standin")
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--first-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--status-code", type=int, default=500)
    parser.add_argument("--retry-after", type=float, default=None)
    parser.add_argument("--die-after", type=int, default=2)
    parser.add_argument("--no-tool-call", action="store_true")
    parser.add_argument("--embedding-dim", type=int, default=4)
    return parser.parse_args(argv)


def behaviour_from(args: argparse.Namespace) -> Behaviour:
    return Behaviour(
        tokens=args.tokens,
        echo=args.echo,
        first_delay=args.first_delay,
        token_delay=args.token_delay,
        mode=args.mode,
        status_code=args.status_code,
        retry_after=args.retry_after,
        die_after=args.die_after,
        tool_call=not args.no_tool_call,
        embedding_dim=args.embedding_dim,
    )


async def serve(args: argparse.Namespace) -> None:
    stand_in = StandIn(args.name, args.host, args.port, behaviour_from(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stand_in.start_async()
    print(f"standin {args.name} listening on {stand_in.url}", flush=True)
    await stop.wait()
    await stand_in.stop_async()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        behaviour_from(args)
    except ValueError as exc:
        print(f"standin: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
