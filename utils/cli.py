"""What every script shares at its edge: --config/--set options and turning settings errors into
clear command-line errors."""
from __future__ import annotations

import errno
import functools
import logging
import sys
from pathlib import Path

import click

from utils.log import setup_logging
from utils.memory import keep_freed_memory
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


overwrite_option = click.option(
    "--overwrite", is_flag=True,
    help="Train in RUN_NAME's folder even where it holds a finished or interrupted run of other "
         "settings (its models and reports are deleted); without it such a run is kept and the "
         "command stops.")


def settings_from_cli(config_file: str | None, overrides: tuple[str, ...]) -> Settings:
    try:
        return load_settings(DEFAULTS_FILE, config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def step_command(log_file=None):
    """Make ``func(settings, **options)`` a click command with --config/--set.

    The settings are read once here, logging is set up (``log_file``: a name inside the run
    folder, or a function of the settings giving a path), memory freed is kept for reuse
    (utils.memory), and expected failures end in one line instead of a traceback.
    """
    def decorate(func):
        @functools.wraps(func)
        def run(config_file, overrides, **options):
            s = settings_from_cli(config_file, overrides)
            if callable(log_file):
                log_path = log_file(s)
            else:
                log_path = Path(s["RUNS_DIR"]) / s["RUN_NAME"] / log_file if log_file else None
            setup_logging(s["LOG_LEVEL"], log_path)
            keep_freed_memory()
            return func(s, **options)
        return click.command(help=func.__doc__)(settings_options(user_errors()(run)))
    return decorate


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
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                logging.getLogger("bioacoustics").debug("disk full", exc_info=True)
                where = f" writing {exc.filename}" if exc.filename else ""
                raise click.ClickException(
                    f"no space left on the device{where}: free some space and run the same command "
                    "again (finished work is kept; nothing half-written was left behind)") from None
            except KeyboardInterrupt:
                click.echo("Interrupted: completed work is kept; run the same command again to resume.",
                           err=True)
                sys.exit(130)
        return inner
    return wrap
