"""Step 5: score a folder of audio files and write a submission or detection file.

    python -m submission --config configs/demo.py [--audio DIR] [--out FILE] [--format NAME]

Formats (SUBMISSION_FORMAT; docs/submission.md shows each): topn_csv, birdclef2018_mono,
birdclef2018_soundscape, kaggle2021, kaggle_probabilities, raven, audacity, detections_csv.
"""
import click

from utils import steps
from utils.cli import step_command
from utils.formats import FORMATS


@step_command(log_file="submission.log")
@click.option("--audio", type=click.Path(file_okay=False), help="Folder to score (SUBMISSION_AUDIO).")
@click.option("--out", type=click.Path(), help="Output file or folder (SUBMISSION_FILE).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format (SUBMISSION_FORMAT).")
def main(s, audio, out, fmt):
    """Score every file with the model's own spectrogram settings and write the chosen format;
    the file is checked against the format before the command reports success."""
    s = s.replace("--audio/--out/--format", SUBMISSION_AUDIO=audio or s.SUBMISSION_AUDIO,
                  SUBMISSION_FILE=out or s.SUBMISSION_FILE, SUBMISSION_FORMAT=fmt or s.SUBMISSION_FORMAT)
    result = steps.submission_step(s)
    click.echo(f"Submission ({result['format']}) {result['file']}: {result['recordings']} recordings, "
               f"{len(result['skipped'])} skipped")
    for skipped in result["skipped"][:10]:
        click.echo(f"  skipped {skipped['file']}: {skipped['reason']}")
    if len(result["skipped"]) > 10:
        click.echo(f"  ... and {len(result['skipped']) - 10} more (see the summary JSON beside it)")
    if result.get("missing_classes"):
        click.echo(f"{len(result['missing_classes'])} challenge classes unknown to the model were "
                   f"written as 0: {', '.join(result['missing_classes'][:10])}")


if __name__ == "__main__":
    main()
