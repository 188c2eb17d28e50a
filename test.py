"""Step 4: score the TEST_SPLIT recordings, pool per recording, report every challenge metric.

    python test.py --config configs/demo.py
    python test.py --compare runs/a runs/b      # side-by-side table of two runs' reports, with
                                                # bootstrap intervals of each change
"""
import click

from utils import steps
from utils.cli import step_command
from utils.comparison import compare_reports
from utils.evaluation import summary_text


@step_command(log_file="test.log")
@click.option("--compare", nargs=2, metavar="RUN1 RUN2",
              help="Print two runs' test reports side by side (run names, run folders or report "
                   "folders) instead of testing.")
@click.option("--resamples", default=10000, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap resamples for --compare's interval of the change of each metric that "
                   "is a mean over recordings (0: no intervals).")
def main(s, compare, resamples):
    """Evaluate the model (TEST_MODELS, or the run's best.keras); the report goes to the run
    folder: summary, per-recording and per-class CSVs, confusion matrix and plots."""
    if compare:
        a, b = (steps.report_folder(s, name) for name in compare)
        click.echo(compare_reports(a, b, resamples=resamples))
        return
    summary = steps.test_step(s)
    click.echo(f"Report: {summary['report']}")
    click.echo(f"[{s.TEST_SPLIT}] " + summary_text(summary))


if __name__ == "__main__":
    main()
