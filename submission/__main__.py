"""Step 5: score a folder of audio files and write a per-recording top-N CSV.

    python -m submission --config configs/demo.py [--audio DIR] [--out FILE]
"""
import click

from utils import steps
from utils.cli import settings_from_cli, settings_options, user_errors
from utils.log import setup_logging


@click.command()
@settings_options
@click.option("--audio", type=click.Path(file_okay=False), help="Folder to score (SUBMISSION_AUDIO).")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (SUBMISSION_FILE).")
@user_errors()
def main(config_file, overrides, audio, out):
    """Write recording,class,score,rank rows (SUBMISSION_TOP_N per recording)."""
    extra = [f"SUBMISSION_AUDIO={audio}"] * bool(audio) + [f"SUBMISSION_FILE={out}"] * bool(out)
    s = settings_from_cli(config_file, tuple(overrides) + tuple(extra))
    setup_logging(s.LOG_LEVEL)
    result = steps.submission_step(s)
    click.echo(f"Submission {result['file']}: {result['recordings']} recordings, "
               f"{len(result['skipped'])} skipped")


if __name__ == "__main__":
    main()
