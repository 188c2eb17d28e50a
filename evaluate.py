"""Train, then test: one command per experiment.

    python evaluate.py --config configs/insectset32.py
"""
import click

from utils import steps
from utils.cli import step_command
from utils.evaluation import summary_line


@step_command(log_file="evaluate.log")
def main(s):
    """Run train.py then test.py with the same settings and print the test summary."""
    result = steps.train_step(s)
    click.echo(f"Trained {result['epochs']} epochs in {result['train_seconds']} s "
               f"(best epoch {result['best_epoch']})")
    summary = steps.test_step(s)
    click.echo(f"Report: {summary['report']}")
    click.echo(f"[{s.TEST_SPLIT}] " + summary_line(summary))


if __name__ == "__main__":
    main()
