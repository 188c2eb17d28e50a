"""Train, then test: one command per experiment. Every call that trains adds a row to
RUNS_DIR/experiments.csv.

    python evaluate.py --config configs/insectset32.py
    python evaluate.py --config configs/demo.py --folds 5   # cross-validation by recording

Cross-validation resumes: a fold finished earlier with the same settings is reused, and one
stopped between its training and its test is only tested.
"""
import click

from utils import steps
from utils.cli import overwrite_option, step_command
from utils.evaluation import METRICS, summary_text


@step_command(log_file="evaluate.log")
@click.option("--folds", default=0, show_default=True,
              help="K-fold cross-validation over the train and val recordings (grouped by "
                   "CSV_GROUP_COLUMN when the dataset has one); 0 = train once, test on TEST_SPLIT.")
@overwrite_option
def main(s, folds, overwrite):
    """Run train.py then test.py with the same settings, or K-fold cross-validation."""
    result = steps.evaluate_step(s, folds, overwrite)
    if folds:
        reused = f"; {result['reused_folds']} fold(s) finished earlier, reused" if result["reused_folds"] else ""
        if result["tested_only_folds"]:
            reused += f"; {result['tested_only_folds']} fold(s) trained earlier, tested now"
        click.echo(f"{folds}-fold cross-validation ({result['train_seconds']:.0f} s of training{reused}), "
                   f"mean +- spread over folds, then over all {result['out_of_fold']['scored']} "
                   "held-out recordings at once:")
        for key, label in METRICS.items():
            if key in result:
                click.echo(f"  {label:<22} {result[key]:.4f} +- {result[key + '_std']:.4f}   "
                           f"{result['out_of_fold'][key]:.4f}")
        click.echo(f"Report over the held-out recordings: {result['report']}")
        return
    trained, summary = result["train"], result["test"]
    click.echo(f"Trained {trained['epochs']} epochs in {trained['train_seconds']} s "
               f"(best epoch {trained['best_epoch']})")
    click.echo(f"Report: {summary['report']}")
    click.echo(f"[{s.TEST_SPLIT}] " + summary_text(summary))


if __name__ == "__main__":
    main()
