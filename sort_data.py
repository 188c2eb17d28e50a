"""Step 1: sort a raw dataset into <dataset>/{train,val,test}/<class>/ and metadata/<id>.json.

    python sort_data.py --config configs/demo.py
"""
import click

from utils import steps
from utils.cli import step_command


@step_command()
def main(s):
    """Sort RAW_DATA (folder per class, or a CSV) into DATASET_DIR, split by recording."""
    summary = steps.sort_step(s)
    splits = ", ".join(f"{k} {v}" for k, v in sorted(summary["splits"].items()))
    click.echo(f"Dataset {s.DATASET_DIR}: {summary['sorted']} recordings sorted, "
               f"{summary['already_done']} already there ({splits}); "
               f"{len(summary['problems'])} skipped (see sort_summary.json)")


if __name__ == "__main__":
    main()
