"""Step 4: score the TEST_SPLIT recordings, pool per recording, report MLRAP and accuracy.

    python test.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import step_command
from utils.evaluation import summary_line


@step_command(log_file="test.log")
def main(s):
    """Evaluate the model (TEST_MODEL or the run's best.keras); reports go to the run folder."""
    summary = steps.test_step(s)
    click.echo(f"Report: {summary['report']}")
    click.echo(f"[{s.TEST_SPLIT}] " + summary_line(summary))


if __name__ == "__main__":
    main()
