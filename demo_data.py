"""Step 0 of the demo: generate a synthetic dataset (made-up species calling in noise).

    python demo_data.py --out data/demo/raw
"""
import click

from utils.synth import make_dataset


@click.command()
@click.option("--out", default="data/demo/raw", show_default=True, type=click.Path(file_okay=False))
@click.option("--species", default=8, show_default=True, help="Number of species (2-8).")
@click.option("--per-species", default=8, show_default=True, help="Recordings per species.")
@click.option("--sample-rate", default=22050, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, species, per_species, sample_rate, seed):
    """Write audio/<species>/*.wav, labels.csv (with secondary labels) and unlabelled/*.wav."""
    csv_path = make_dataset(out, species, per_species, sample_rate=sample_rate, seed=seed)
    click.echo(f"Demo data: {species * per_species} recordings listed in {csv_path}")


if __name__ == "__main__":
    main()
