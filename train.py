"""Step 3: train a Keras model on the store; best and snapshot models go to RUNS_DIR/RUN_NAME.

    python train.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import overwrite_option, step_command


@step_command(log_file="train.log")
@overwrite_option
def main(s, overwrite):
    """Train on the train split, select best.keras on the validation recordings."""
    result = steps.train_step(s, overwrite=overwrite)
    click.echo(f"Trained {result['epochs']} epochs in {result['train_seconds']} s; best "
               f"{result['monitor']} {result['best_value']} at epoch {result['best_epoch']} -> "
               f"{steps.run_dir(s) / 'best.keras'}")


if __name__ == "__main__":
    main()
