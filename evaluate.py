"""Train, then test: one command per experiment.

    python evaluate.py --config configs/insectset32.py
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
    """Run train.py then test.py with the same settings and print the test summary."""
    s = settings_from_cli(config_file, overrides)
    setup_logging(s.LOG_LEVEL, steps.run_dir(s) / "evaluate.log")
    result = steps.train_step(s)
    click.echo(f"Trained {result['epochs']} epochs in {result['train_seconds']} s "
               f"(best epoch {result['best_epoch']})")
    summary = steps.test_step(s)
    click.echo(f"Report: {summary['report']}")
    click.echo(f"[{s.TEST_SPLIT}] " + summary_line(summary))


if __name__ == "__main__":
    main()
