"""``llm-router config validate`` and ``llm-router config discover``."""

from __future__ import annotations

import json
import os
import sys

import click

from llm_router_api.cli.known import DEFAULT_HOST, DEFAULT_TIMEOUT, KNOWN, Server

FAILED = 1


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(discover)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check models-config FILE exactly as startup does.

    Valid: exit 0 and a summary. Invalid: exit 1 and, on stderr, the one line startup would
    print (the file, the JSON path inside it, what is wrong). "env:NAME" tokens are read
    from the current environment, as at startup; no token is ever printed.
    """
    from llm_router_api.core.config import ConfigError, load_models_config

    try:
        # The command line is an entry point like the launcher: `env:NAME` secrets are
        # resolved from this process's environment, as `load_settings` would capture it.
        models = load_models_config(file, dict(os.environ))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(FAILED)
    providers = sum(len(m.providers) for m in models.models.values())
    click.echo(f"{file}: valid: {len(models.models)} models, {providers} providers")
    for model in models.models.values():
        types = ", ".join(dict.fromkeys(p.api_type for p in model.providers))
        count = len(model.providers)
        line = f"  {model.name}: {count} provider{'s' if count > 1 else ''} ({types})"
        if model.fallback_models:
            line += f"; falls back to {', '.join(model.fallback_models)}"
        click.echo(line)


def parse_ports(values: tuple[str, ...]) -> list[Server]:
    """``--ports ollama=11435,vllm=8001`` (repeatable) as the servers to probe."""
    known = {server.name: server for server in KNOWN}
    servers: dict[tuple[str, int], Server] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, port = item.partition("=")
            if name not in known or not port.isdigit() or not 0 < int(port) < 65536:
                raise click.BadParameter(
                    f"{item!r}: expected NAME=PORT, NAME one of {', '.join(known)}",
                    param_hint="--ports")
            servers[(name, int(port))] = known[name].on(int(port))
    return list(servers.values())


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="The machine whose well-known ports are probed.")
@click.option("--ports", "ports", multiple=True, metavar="NAME=PORT[,NAME=PORT...]",
              help="Probe only these servers on these ports (repeatable). Names: "
                   + ", ".join(s.name for s in KNOWN) + ".")
@click.option("--timeout", type=click.FloatRange(min=0.05, max=30), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds to wait for each server.")
def discover(host: str, ports: tuple[str, ...], timeout: float) -> None:
    """Find the LLM servers running on HOST and print a models-config for them.

    Probes the well-known ports of Ollama (11434), vLLM (8000), LM Studio (1234), llama.cpp
    (8080), TabbyAPI (5000), KoboldCpp (5001) and SGLang (30000), all at once, and prints a
    valid models-config JSON on stdout (what was found goes to stderr). Exit 1 when no model
    was found.
    """
    from llm_router_api.cli.discover import discover_servers, models_config
    from llm_router_api.core.config import ConfigError, parse_models_config

    servers = parse_ports(ports) if ports else list(KNOWN)
    found = discover_servers(host, servers, timeout)
    for result in found:
        click.echo(f"{result.server.name} on {result.url}: {result.note}", err=True)
    config = models_config(found)
    if not config["active_models"]["discovered_models"]:
        click.echo(f"no models found on {host}", err=True)
        sys.exit(FAILED)
    try:  # what we print must start a gateway as it is
        parse_models_config(config, "<discovered>", {})
    except ConfigError as exc:
        click.echo(f"the discovered config is not valid: {exc}", err=True)
        sys.exit(FAILED)
    click.echo(json.dumps(config, indent=2))
