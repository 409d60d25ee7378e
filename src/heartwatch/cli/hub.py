"""``heartwatch hub -c hub.toml``: the fleet's hub; ``heartwatch hub keygen OUT``: its key.

Registered from ``cli/app.py`` (``app.add_typer(hub_app, name="hub")``). Nothing heavy is
imported until a command runs (``heartwatch --help`` stays quick). Exit codes as the rest of
the command: 0 done, 1 could not start or refused, 2 a configuration or usage problem.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heartwatch.cli.text import problem_lines, say

if TYPE_CHECKING:
    from heartwatch.hub.config import HubConfig

DEFAULT_HUB_CONFIG = Path("hub.toml")

hub_app = typer.Typer(
    help="The fleet's hub: agents' events into PostgreSQL, the fleet's dashboard, API and alerts.",
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
)


@hub_app.callback(invoke_without_command=True)
def hub(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The hub's configuration file.")
    ] = DEFAULT_HUB_CONFIG,
    check: Annotated[
        bool, typer.Option("--check", help="Only check the file (and the signing key); exit.")
    ] = False,
) -> None:
    """Run the hub in the foreground until SIGTERM or Ctrl-C (or check its file)."""
    if ctx.invoked_subcommand is not None:
        return
    raise typer.Exit(run_hub_command(config, check=check))


@hub_app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Where to write the new private key (mode 0600).")],
) -> None:
    """Write a new Ed25519 signing key; print the public key line for the agents' [fleet]."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from heartwatch.core.fleetcommands import private_key_text, public_key_text

    key = Ed25519PrivateKey.generate()
    try:
        # O_EXCL: an existing key is never overwritten (the agents trust it); 0600 from birth.
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        say(f"{out}: exists already; not overwritten (remove it first to replace the key)", "red")
        raise typer.Exit(1) from None
    except OSError as error:
        say(f"{out}: cannot write: {error.strerror}", "red")
        raise typer.Exit(1) from None
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(private_key_text(key) + "\n")
    say(f"wrote {out} (keep it secret); put this in each agent's [fleet]:")
    sys.stdout.write(f'hub_keys = ["{public_key_text(key.public_key())}"]\n')


def run_hub_command(config: Path, *, check: bool = False) -> int:
    """Load ``config``, then run the hub (or only check it); the exit code."""
    import asyncio

    from heartwatch.config import ConfigError
    from heartwatch.hub.config import load_hub_config

    try:
        loaded = load_hub_config(config)
    except ConfigError as error:
        headline, *problems = problem_lines(error.source or config, error.problems)
        say(headline, "red")
        for line in problems:
            say(line)
        return 2
    # The hub signs every command it sends: without its key it cannot do its job.
    key_problem = _signing_key_problem(loaded)
    if key_problem:
        say(f"{config}: {key_problem}", "red")
        return 2
    if check:
        say(f"{config}: OK (hub {loaded.name})")
        return 0
    _configure_logging()
    from heartwatch.hub.assembly import run_hub
    from heartwatch.hub.schema import SchemaTooNew

    try:
        asyncio.run(run_hub(loaded))
    except SchemaTooNew as error:
        say(f"cannot start: {error}", "red")
        return 1
    except (OSError, ConnectionError) as error:
        from heartwatch.core.redact import redact

        say(f"cannot start: {redact(str(error))}", "red")
        return 1
    except Exception as error:  # psycopg's errors (database unreachable, refused login)
        from heartwatch.core.redact import redact

        if type(error).__module__.partition(".")[0] not in ("psycopg", "psycopg_pool"):
            raise
        say(f"cannot start: the database: {redact(str(error)).strip()}", "red")
        return 1
    return 0


def _signing_key_problem(config: HubConfig) -> str | None:
    from heartwatch.hub.commands import load_signing_key

    try:
        load_signing_key(config)
    except ValueError as error:
        return str(error)
    return None


def _configure_logging() -> None:
    """The hub's log: standard error, every URL's credentials masked."""
    import logging

    from loguru import logger

    from heartwatch.core.redact import redact

    def masked(record: Any) -> None:
        record["message"] = redact(record["message"])

    logger.remove()
    logger.configure(patcher=masked)
    logger.add(sys.stderr, level="INFO", backtrace=False, diagnose=False)
    logging.basicConfig(level=logging.WARNING)
