"""Step 4: score the TEST_SPLIT recordings, pool per recording, report MLRAP and accuracy.

    python test.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import settings_from_cli, settings_options, user_errors
from utils.evaluation import summary_line
from utils.log import setup_logging


@click.command()
@settings_options
@user_errors()
def main(config_file, overrides):
    """Evaluate the model (TEST_MODEL or the run's best.keras); reports go to the run folder."""
    s = settings_from_cli(config_file, overrides)
    setup_logging(s.LOG_LEVEL, steps.run_dir(s) / "test.log")
    summary = steps.test_step(s)
    click.echo(f"Report: {summary['report']}")
    click.echo(summary_line(summary))


if __name__ == "__main__":
    main()
