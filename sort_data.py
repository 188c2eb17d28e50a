"""Step 1: sort a raw dataset into <dataset>/{train,val,test}/<class>/ and metadata/<id>.json.

    python sort_data.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import settings_from_cli, settings_options, user_errors
from utils.log import setup_logging


@click.command()
@settings_options
@user_errors()
def main(config_file, overrides):
    """Sort RAW_DATA (folder per class, or a CSV) into DATASET_DIR, split by recording."""
    s = settings_from_cli(config_file, overrides)
    setup_logging(s.LOG_LEVEL)
    summary = steps.sort_step(s)
    splits = ", ".join(f"{k} {v}" for k, v in sorted(summary["splits"].items()))
    click.echo(f"Dataset {s.DATASET_DIR}: {summary['sorted']} recordings sorted, "
               f"{summary['already_done']} already there ({splits}); "
               f"{len(summary['problems'])} skipped (see sort_summary.json)")


if __name__ == "__main__":
    main()
