"""What every script shares at its edge: --config/--set options and turning settings errors into
clear command-line errors."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from utils.settings import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_FILE = REPO_ROOT / "config.py"


def settings_options(func):
    """Add ``--config FILE`` and repeated ``--set KEY=VALUE`` to a click command."""
    func = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override one setting (repeatable), e.g. --set EPOCHS=5.")(func)
    func = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="Experiment override file (configs/*.py) or a saved run config.json.")(func)
    return func


def settings_from_cli(config_file: str | None, overrides: tuple[str, ...]) -> Settings:
    try:
        return load_settings(DEFAULTS_FILE, config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def user_errors(*kinds: type[BaseException]):
    """Report expected failures (bad data, bad settings) as one line instead of a traceback."""
    kinds = kinds or (ValueError, FileNotFoundError)

    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except click.ClickException:
                raise
            except kinds as exc:
                logging.getLogger("bioacoustics").debug("failure", exc_info=True)
                raise click.ClickException(str(exc)) from None
            except KeyboardInterrupt:
                click.echo("Interrupted: completed work is kept; run the same command again to resume.",
                           err=True)
                sys.exit(130)
        return inner
    return wrap
