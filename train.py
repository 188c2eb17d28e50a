"""Step 3: train a Keras model on the store; best and snapshot models go to RUNS_DIR/RUN_NAME.

    python train.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import settings_from_cli, settings_options, user_errors
from utils.log import setup_logging


@click.command()
@settings_options
@user_errors()
def main(config_file, overrides):
    """Train on the train split, select best.keras on the validation recordings."""
    s = settings_from_cli(config_file, overrides)
    setup_logging(s.LOG_LEVEL, steps.run_dir(s) / "train.log")
    result = steps.train_step(s)
    click.echo(f"Trained {result['epochs']} epochs in {result['train_seconds']} s; best "
               f"{result['monitor']} {result['best_value']} at epoch {result['best_epoch']} -> "
               f"{steps.run_dir(s) / 'best.keras'}")


if __name__ == "__main__":
    main()
