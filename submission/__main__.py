"""Step 5: score a folder of audio files and write a per-recording top-N CSV.

    python -m submission --config configs/demo.py [--audio DIR] [--out FILE]
"""
import click

from utils import steps
from utils.cli import step_command


@step_command()
@click.option("--audio", type=click.Path(file_okay=False), help="Folder to score (SUBMISSION_AUDIO).")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (SUBMISSION_FILE).")
def main(s, audio, out):
    """Write recording,class,score,rank rows (SUBMISSION_TOP_N per recording)."""
    s = s.replace("--audio/--out", SUBMISSION_AUDIO=audio or s.SUBMISSION_AUDIO,
                  SUBMISSION_FILE=out or s.SUBMISSION_FILE)
    result = steps.submission_step(s)
    click.echo(f"Submission {result['file']}: {result['recordings']} recordings, "
               f"{len(result['skipped'])} skipped")


if __name__ == "__main__":
    main()
