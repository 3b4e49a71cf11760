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
from .sim import ServerSim, SimParams


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
    sim = parser.add_argument_group("sim mode (standin.sim): a cached, queueing server")
    sim.add_argument("--sim", action="store_true", help="simulate prefix cache, slots, queue")
    sim.add_argument("--slots", type=int, default=SimParams.slots)
    sim.add_argument("--prefill-per-char", type=float, default=SimParams.prefill_per_char)
    sim.add_argument("--cache-chars", type=int, default=SimParams.cache_chars)
    sim.add_argument("--block-chars", type=int, default=SimParams.block_chars)
    sim.add_argument("--model", default=SimParams.model)
    sim.add_argument("--count", type=int, default=1,
                     help="servers to run in this process, on consecutive free ports")
    return parser.parse_args(argv)


def sim_from(args: argparse.Namespace) -> ServerSim | None:
    if not args.sim:
        return None
    return ServerSim(SimParams().updated(
        slots=args.slots, prefill_per_char=args.prefill_per_char, cache_chars=args.cache_chars,
        block_chars=args.block_chars, model=args.model))


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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    servers = []
    for index in range(max(1, args.count)):
        name = args.name if args.count <= 1 else f"{args.name}{index}"
        port = args.port if index == 0 or args.port == 0 else args.port + index
        stand_in = StandIn(name, args.host, port, behaviour_from(args), sim=sim_from(args))
        await stand_in.start_async()
        servers.append(stand_in)
        print(f"standin {name} listening on {stand_in.url}", flush=True)
    await stop.wait()
    for stand_in in servers:
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
