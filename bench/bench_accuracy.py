"""Accuracy on InsectSet32: train from scratch on the official train split, report file-level
top-1 accuracy on test of the model that SELECT_FROM and SELECT_METRIC pick (by default the
schedule's last epoch), for several seeds. Headline: the mean over seeds. Each seed's validation
top-1 (scored as the test) is printed too: recipes are chosen on that one, never on the test.
With several seeds, their models are then also scored as one ensemble (scores averaged), on test
and validation: what ensembling buys, for information (the target is per model).

    python bench/bench_accuracy.py                 # 3 seeds, the full default recipe
    python bench/bench_accuracy.py --quick         # 1 seed, 1 epoch: checks the chain runs
    python bench/bench_accuracy.py --set EPOCHS=40 # any setting, as with the scripts

Each seed is a separate run folder (RUN_NAME-seed<N>) so its reports stay for inspection; the
sorted dataset and the spectrogram store are shared between seeds and reused when present. A
seed whose run folder already holds a finished test with the same settings is reported, not
retrained, so an interrupted benchmark completes on a re-run; one that differs only in how it is
scored (TEST_TIME_ROLLS, ...: TEST_TIME_SETTINGS in utils/experiments.py) is tested again, not
retrained; one finished with other settings
(or before a setting existed, unless VALUE_BEFORE in utils/experiments.py says what the code did
without it and that is the value asked for) is never trained over: the benchmark stops and names
what differs (choose another RUN_NAME, or pass --overwrite to retrain it in its folder).
"""
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import numpy as np  # noqa: E402

from utils import steps  # noqa: E402
from utils.cli import overwrite_option, settings_from_cli, user_errors  # noqa: E402
from utils.fileio import read_json  # noqa: E402
from utils.log import setup_logging  # noqa: E402
from utils.memory import keep_freed_memory  # noqa: E402
from utils.runtime import machine_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.80


def seed_run(s, seed: int):
    """The settings of one seed's run: its own folder, so its reports stay for inspection."""
    return s.replace(SEED=seed, RUN_NAME=f"{s.RUN_NAME}-seed{seed}")


def finished_run(s, overwrite: bool = False) -> tuple[dict, dict] | None:
    """(train summary, test summary) of a finished run of these settings, if there is one. A
    finished run of other settings raises unless ``overwrite``: retraining in its folder would
    delete its models."""
    folder = steps.run_dir(s)
    report = folder / f"test-{s.TEST_SPLIT}"
    if not steps.finished_run(s, report, overwrite):
        return None
    click.echo(f"{folder}: finished with these settings; reported, not retrained")
    return read_json(folder / "train_summary.json"), read_json(report / "summary.json")


def validation_report(run, finished: bool) -> dict:
    """The chosen model scored on the validation recordings exactly as on the test ones (all
    chunks, the same pooling): a recipe is chosen on this, never on the test figure. A finished
    run's report is reused; a run trained just now is scored afresh."""
    report = steps.run_dir(run) / "test-val"
    if finished and steps.report_is_current(run, report):
        return read_json(report / "summary.json")
    return steps.test_step(run.replace(TEST_SPLIT="val"))


def seed_ensemble(s, runs, split: str) -> dict:
    """The runs' chosen models as one ensemble (TEST_MODELS, equal weights) scored on ``split``;
    the report goes to RUNS_DIR/<RUN_NAME>-ensemble/test-<split>."""
    members = [str(model) for run in runs for model in steps.model_files(run)]
    return steps.test_step(s.replace(TEST_MODELS=members, TEST_SPLIT=split,
                                     RUN_NAME=f"{s.RUN_NAME}-ensemble"))


@click.command()
@click.option("--config", "config_file", default=str(REPO / "configs" / "insectset32.py"),
              show_default=True, help="Settings override file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one setting.")
@click.option("--seeds", default="1,2,3", show_default=True, help="Comma-separated training seeds.")
@click.option("--quick", is_flag=True, help="One seed, one epoch, a subset of chunks (under a minute).")
@overwrite_option
@user_errors()
def main(config_file, overrides, seeds, quick, overwrite):
    if quick:
        overrides = (*overrides, "EPOCHS=1", "MAX_CHUNKS_PER_CLASS=12", "RUN_NAME=bench-quick")
        seeds = seeds.split(",")[0]
    s = settings_from_cli(config_file, overrides)
    keep_freed_memory()  # as train.py does
    if not Path(s.RAW_DATA).exists():
        click.echo(f"InsectSet32 not found at {s.RAW_DATA}; nothing to measure")
        click.echo(f"RESULT insectset32_top1 nan target {TARGET}")
        return
    setup_logging("WARNING", None)
    if not (Path(s.DATASET_DIR) / "metadata").is_dir():
        steps.sort_step(s)
    rows, runs = [], [seed_run(s, int(seed)) for seed in seeds.split(",")]
    if quick:  # a check of the chain: its own scratch runs are trained afresh, never reported
        for run in runs:
            shutil.rmtree(steps.run_dir(run), ignore_errors=True)
    finished_runs = [finished_run(run, overwrite) for run in runs]  # before training any: stops on a clash
    for run, finished in zip(runs, finished_runs):
        seed = run.SEED
        if finished:
            trained, tested = finished
        else:  # train + test, and a row in RUNS_DIR/experiments.csv
            steps.spec_step(run)  # a no-op when the store exists (seeds share it unless it samples)
            result = steps.evaluate_step(run, overwrite=overwrite)
            trained, tested = result["train"], result["test"]
        validated = validation_report(run, finished is not None)
        rows.append({"seed": seed, "top1": tested["top1_accuracy"], "mlrap": tested["mlrap"],
                     "val_top1": validated["top1_accuracy"], "val_mlrap": validated["mlrap"],
                     "train_seconds": trained["train_seconds"], "epochs": trained["epochs"],
                     "best_epoch": trained["best_epoch"]})
        click.echo(f"seed {seed}: test top-1 {tested['top1_accuracy']:.4f}  MLRAP {tested['mlrap']:.4f}  "
                   f"(validation top-1 {validated['top1_accuracy']:.4f}; {trained['epochs']} epochs, "
                   f"best {trained['best_epoch']}, {trained['train_seconds']:.0f} s)")
    top1 = np.array([r["top1"] for r in rows])
    val_top1 = np.array([r["val_top1"] for r in rows])
    click.echo(f"validation top-1 mean {val_top1.mean():.4f} (what a choice between recipes should rest on)")
    summary = {"mean_top1": float(top1.mean()), "std_top1": float(top1.std()),
               "mean_val_top1": float(val_top1.mean()), "runs": rows,
               "overrides": list(overrides), "machine": machine_name(),
               "backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    if len(runs) > 1:
        ensemble = {split: seed_ensemble(s, runs, split)["top1_accuracy"] for split in (s.TEST_SPLIT, "val")}
        summary.update(ensemble_top1=ensemble[s.TEST_SPLIT], ensemble_val_top1=ensemble["val"])
        click.echo(f"the {len(runs)} seeds' models as one ensemble (for information; the target is per "
                   f"model): test top-1 {ensemble[s.TEST_SPLIT]:.4f}, validation top-1 {ensemble['val']:.4f}")
    out = Path(s.RUNS_DIR) / f"{s.RUN_NAME}-accuracy.json"
    out.write_text(json.dumps(summary, indent=2))
    click.echo(f"test top-1 mean {top1.mean():.4f} +- {top1.std():.4f} over {len(rows)} seed(s); "
               f"{out}")
    click.echo(f"RESULT insectset32_top1 {top1.mean():.4f} target {TARGET}")


if __name__ == "__main__":
    main()
