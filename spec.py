"""Step 2: spectrogram chunks of every sorted recording into the training store.

    python spec.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import step_command


@step_command()
def main(s):
    """Extract chunks (resumable: completed recordings are kept, the rest are processed)."""
    summary = steps.spec_step(s)
    click.echo(f"Store {summary['store']}: {summary['signal_chunks']} signal and "
               f"{summary['noise_chunks']} noise chunks from {summary['recordings']} recordings; "
               f"{summary['problems']} files skipped (see problems.csv)")


if __name__ == "__main__":
    main()
