"""Step 2: spectrogram chunks of every sorted recording into the training store.

    python spec.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import step_command


@step_command(log_file=lambda s: steps.store_root(s) / "spec.log")
def main(s):
    """Extract chunks (resumable: completed recordings are kept, the rest are processed)."""
    summary = steps.spec_step(s)
    click.echo(f"Store {summary['store']}: {summary['signal_chunks']} signal and "
               f"{summary['noise_chunks']} noise chunks from {summary['recordings']} recordings")
    if summary["problems"]:
        click.echo(f"Skipped {summary['problems']} files (problems.csv, spec.log):")
        for line in summary["problem_table"]:
            click.echo("  " + line)


if __name__ == "__main__":
    main()
