"""``llm-router keys new``: a caller key, shown once, and its keys-file entry (digest only)."""

from __future__ import annotations

import json
import secrets

import click

KEY_PREFIX = "llmr-"
KEY_BYTES = 32  # 256 random bits


def register(group: click.Group) -> None:
    group.add_command(new)


@click.command()
@click.option("--id", "key_id", metavar="ID",
              help="The key's name in logs, metrics and limits [default: key-<8 hex digits>].")
@click.option("--rpm", type=click.IntRange(min=1), help="requests_per_minute limit.")
@click.option("--tpm", type=click.IntRange(min=1), help="tokens_per_minute limit.")
@click.option("--concurrency", type=click.IntRange(min=1), help="max_concurrent limit.")
@click.option("--model", "models", multiple=True, metavar="MODEL",
              help="Allow only this model (repeatable) [default: every model].")
def new(key_id: str | None, rpm: int | None, tpm: int | None, concurrency: int | None,
        models: tuple[str, ...]) -> None:
    """Make a new caller key.

    stdout gets two lines: the key (shown this once: store it now) and the entry to add to the
    "keys" list of the keys file (LLM_ROUTER_API_KEYS_FILE), which holds only the key's
    SHA-256 digest and the limits given.
    """
    from pydantic import ValidationError

    from llm_router_api.auth.keys import ApiKey, digest

    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    default_id = f"key-{secrets.token_hex(4)}"
    entry: dict[str, object] = {"id": default_id if key_id is None else key_id,
                                "sha256": digest(key)}
    limits = {"requests_per_minute": rpm, "tokens_per_minute": tpm,
              "max_concurrent": concurrency, "models": list(models) or None}
    entry.update({name: value for name, value in limits.items() if value is not None})
    try:
        ApiKey.model_validate(entry)  # exactly what the gateway will read
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"], param_hint="--id") from None
    click.echo(key)
    click.echo(json.dumps(entry))
    click.echo("The key above is shown only now; the keys file needs only the entry "
               "(add it to its \"keys\" list).", err=True)
