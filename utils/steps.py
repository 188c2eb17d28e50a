"""The five pipeline steps as functions of a settings mapping.

Scripts read the settings at their edge and call one of these; evaluate.py and the end-to-end
tests call several in a row. Keras is imported only inside the steps that need a model, after the
backend has been chosen.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from utils.audio import AUDIO_EXTENSIONS
from utils.dataset import assign_splits, load_recordings, scan_csv, scan_folders, sort_dataset
from utils.extract import (DaskPool, Job, Selection, class_quotas, extract_to_store, plan_jobs,
                           worker_count, worker_pool)
from utils.fileio import atomic_write_json, atomic_write_text, read_json
from utils.gating import mostly_noise_recordings
from utils.settings import save_settings
from utils.spectrogram import SpecParams, spec_differences
from utils.store import store_path

log = logging.getLogger("bioacoustics")

Settings = Mapping[str, Any]
FOLD_SPLIT_FILE = "fold_split.json"  # in a cross-validation fold's folder: recording id -> train/val


def use_backend(name: str) -> None:
    """Choose the Keras backend before keras is first imported ("" keeps the environment's)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not name:
        return
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != name:
        raise RuntimeError(f"keras is already running on {sys.modules['keras'].backend.backend()!r}; "
                           f"cannot switch to {name!r} in this process")
    os.environ["KERAS_BACKEND"] = name


def run_dir(s: Settings) -> Path:
    return Path(s["RUNS_DIR"]) / s["RUN_NAME"]


def model_files(s: Settings) -> list[Path]:
    return [Path(p) for p in s["TEST_MODELS"]] or [run_dir(s) / "best.keras"]


# ---------------------------------------------------------------- step 1

def sort_step(s: Settings) -> dict:
    raw = Path(s["RAW_DATA"])
    fmt = s["RAW_FORMAT"]
    if fmt == "auto":
        fmt = "csv" if raw.suffix.lower() == ".csv" else "folders"
    skipped: list[dict] = []
    if fmt == "csv":
        items, skipped = scan_csv(raw, s["CSV_PATH_COLUMN"], s["CSV_LABEL_COLUMN"],
                                  s["CSV_SECONDARY_COLUMN"], s["CSV_SPLIT_COLUMN"],
                                  group_column=s["CSV_GROUP_COLUMN"])
    else:
        items = scan_folders(raw)
    if not items:
        raise ValueError(f"no recordings found in {raw}")
    items = assign_splits(items, s["VAL_FRACTION"], s["SEED"])
    summary = sort_dataset(items, s["DATASET_DIR"], s["SORT_MODE"])
    summary["problems"] += skipped
    dataset = Path(s["DATASET_DIR"])
    save_settings(s, dataset / "sort_config.json")
    atomic_write_json(dataset / "sort_summary.json", summary)
    return summary


# ---------------------------------------------------------------- step 2

def store_settings(s: Settings) -> dict:
    """What a store's content depends on; its fingerprint names the store folder."""
    chosen = selection(s).to_dict()
    if not selection(s).random and s["MAX_CHUNKS_PER_CLASS"] <= 0:
        del chosen["seed"]  # nothing is drawn at random: training seeds share one store
    return {"spec": SpecParams.from_settings(s).to_dict(), "selection": chosen,
            "max_chunks_per_class": s["MAX_CHUNKS_PER_CLASS"], "segment_length": s["SEGMENT_LENGTH"],
            "dataset": str(Path(s["DATASET_DIR"]).resolve())}


def selection(s: Settings) -> Selection:
    for share in ("NOISE_FRACTION", "MIN_SIGNAL_SHARE"):
        if not 0 <= s[share] <= 1:
            raise ValueError(f"{share} must be between 0 and 1, got {s[share]}")
    return Selection(s["SIGNAL_THRESHOLD"], s["NOISE_FRACTION"], s["MAX_CHUNKS_PER_FILE"], s["SEED"],
                     s["MIN_SIGNAL_SHARE"])


def store_root(s: Settings) -> Path:
    blob = json.dumps(store_settings(s), sort_keys=True).encode()
    return store_path(s["STORE_DIR"], hashlib.sha256(blob).hexdigest()[:12])


def spec_step(s: Settings) -> dict:
    params = SpecParams.from_settings(s)
    recordings = load_recordings(s["DATASET_DIR"])
    if not recordings:
        raise ValueError(f"the dataset at {s['DATASET_DIR']} has no recordings")
    jobs = [Job(r.id, str(r.path(s["DATASET_DIR"])), r.primary, r.split) for r in recordings]
    quotas: dict[str, int] = {}
    if s["MAX_CHUNKS_PER_CLASS"] > 0:  # only training chunks are capped
        by_class: dict[str, dict[str, int]] = {}
        for r in recordings:
            if r.split == "train":
                by_class.setdefault(r.primary, {})[r.id] = params.chunk_count(r.duration)
        for files in by_class.values():
            quotas.update(class_quotas(files, s["MAX_CHUNKS_PER_CLASS"]))
    jobs = plan_jobs(jobs, params, {r.id: r.duration for r in recordings}, s["SEGMENT_LENGTH"])
    root = store_root(s)
    workers = worker_count(s["SPEC_WORKERS"])
    with contextlib.ExitStack() as stack:
        pool = None
        if s["SPEC_BACKEND"] == "dask":
            pool = stack.enter_context(DaskPool(s["DASK_SCHEDULER"], workers))
            log.info("extracting on Dask (%s, %d worker threads)",
                     s["DASK_SCHEDULER"] or "local cluster", pool.workers)
        store, report = extract_to_store(jobs, params, root, selection(s), quotas=quotas,
                                         workers=workers, store_settings=store_settings(s),
                                         shard_size=s["STORE_SHARD_SIZE"], pool=pool)
    save_settings(s, root / "spec_config.json")
    problems = pd.DataFrame(report["problems"], columns=["recording", "path", "status", "detail"])
    atomic_write_text(root / "problems.csv", problems.to_csv(index=False))
    index = store.index
    every_problem = [{"recording": r, **v} for r, v in store.recordings.items() if v["status"] != "ok"]
    summary = {"store": str(root), "recordings": len(store.recordings),
               "signal_chunks": int((~index["noise"]).sum()), "noise_chunks": int(index["noise"].sum()),
               "mostly_noise": mostly_noise_recordings(index, s["SIGNAL_THRESHOLD"]),
               "problems": len(every_problem), "this_run": report["counts"],
               "problem_table": problem_table(every_problem)}
    atomic_write_json(root / "summary.json", summary)
    if summary["mostly_noise"]:
        log.warning("%s Steady songs can look like noise to it: noise chunks are not trained on, "
                    "except the best-scoring ones that keep MIN_SIGNAL_SHARE (%g) of each recording "
                    "as signal; SIGNAL_THRESHOLD = 0 trains on every chunk.",
                    gated_line(summary["mostly_noise"]), s["MIN_SIGNAL_SHARE"])
    for problem in report["problems"]:
        log.warning("skipped %s: %s", problem["path"], problem["detail"])
    if s["EXPORT_PNG"]:
        from utils.png_export import export_png

        out = Path(s["PNG_DIR"]) if s["PNG_DIR"] else root / "png"
        summary["png"] = export_png(store, out)
    return summary


def gated_line(mostly_noise: Mapping[str, Mapping[str, float]], limit: int = 5) -> str:
    """'The signal gate marked most chunks of 4 recordings as noise (A: 3, B: 1).'"""
    counts = [f"{label}: {len(recordings)}" for label, recordings in mostly_noise.items()]
    more = f", {len(counts) - limit} more classes" if len(counts) > limit else ""
    total = sum(len(recordings) for recordings in mostly_noise.values())
    return (f"The signal gate marked most chunks of {total} recording{'s' if total != 1 else ''} "
            f"as noise ({', '.join(counts[:limit])}{more}).")


def problem_table(problems: list[dict], limit: int = 10) -> list[str]:
    """Lines for the console: count per status, then the first few recordings and reasons."""
    if not problems:
        return []
    counts = pd.Series([p["status"] for p in problems]).value_counts()
    lines = [", ".join(f"{status}: {n}" for status, n in counts.items())]
    lines += [f"{p['recording']}: {p['status']} ({p['detail']})" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return lines


# ---------------------------------------------------------------- step 3

def train_step(s: Settings, splits: Mapping[str, str] | None = None, overwrite: bool = False) -> dict:
    """Train on the store; ``splits`` (recording id -> train/val) replaces the dataset's split.
    A finished or interrupted training of other settings in the run folder raises unless
    ``overwrite``, before anything there changes."""
    use_backend(s["KERAS_BACKEND"])
    from utils.store import Store
    from utils.training import TrainOptions, train_model

    run_folder_state(s, overwrite)  # raises on a run of other settings, before the folder changes
    store = Store(store_root(s))
    background = {r.id: r.background for r in load_recordings(s["DATASET_DIR"])}
    out = run_dir(s)
    _forget_results(out)
    save_settings(s, out / "config.json")
    result = train_model(store, background, out, TrainOptions.from_settings(s),
                         extra_meta={"run": s["RUN_NAME"], "store": str(store.root)}, splits=splits)
    atomic_write_json(out / "train_summary.json", result)
    return result


# ---------------------------------------------------------------- step 4

def test_step(s: Settings, out: Path | None = None, recordings=None) -> dict:
    """Score the TEST_SPLIT recordings (or ``recordings``) and write the report to ``out``
    (default RUNS_DIR/RUN_NAME/test-<split>)."""
    use_backend(s["KERAS_BACKEND"])
    from utils.evaluation import TestOptions, evaluate_recordings, write_report
    from utils.inference import load_ensemble

    # metrics of the model itself: "auto" stays on the float export here ("litert-int8" measures int8)
    members, classes = load_ensemble(model_files(s), s["TEST_MODEL_WEIGHTS"], s["SCORING_RUNTIME"],
                                     int8=False)
    for member in members:
        _note_spec_differences(member.meta, s)
    if recordings is None:
        recordings = load_recordings(s["DATASET_DIR"], s["TEST_SPLIT"])
    if not recordings:
        raise ValueError(f"no recordings in the {s['TEST_SPLIT']!r} split of {s['DATASET_DIR']}")
    report = evaluate_recordings(members, classes, recordings, s["DATASET_DIR"],
                                 TestOptions.from_settings(s, worker_count(s["SPEC_WORKERS"])))
    report.summary.update(split=s["TEST_SPLIT"] if out is None else out.name,
                          model=[str(p) for p in model_files(s)],
                          scoring_settings=_scoring_settings(s))
    out = out or run_dir(s) / f"test-{s['TEST_SPLIT']}"
    write_report(out, report)
    report.summary["report"] = str(out)
    return report.summary


def _scoring_settings(s: Settings) -> dict:
    """What a test report records of the settings it was scored with (see report_is_current)."""
    from utils.experiments import SCORING_SETTINGS

    return {k: s[k] for k in sorted(SCORING_SETTINGS)}


def run_folder_state(s: Settings, overwrite: bool = False) -> str:
    """What run_dir(s) holds for a training of these settings: "finished", "interrupted" (it
    resumes) or "none". Settings that only change how a model is scored (TEST_TIME_SETTINGS) are
    not compared. A finished or interrupted training of other settings (or of a time before
    a setting existed) raises before anything in its folder changes, since training there would
    delete its models or mix two experiments, unless ``overwrite``: then its backup goes and the
    folder counts as "none" (the training replaces what it holds)."""
    folder = run_dir(s)
    if not (folder / "config.json").exists():  # nothing to compare: trained afresh (an interrupted
        return "none"                           # run's own identity check still guards a resume)
    if (folder / "train_summary.json").exists():
        state = "finished"
    elif (folder / "backup" / "run.json").exists():
        state = "interrupted"
    else:
        return "none"
    differences = _saved_differences(s, folder)
    if not differences:
        return state
    if not overwrite:
        raise ValueError(f"{folder} holds {'an' if state == 'interrupted' else 'a'} {state} run with "
                         f"other settings: {'; '.join(differences)}. It is kept as it is: choose "
                         "another RUN_NAME, or pass --overwrite to train this one in its folder "
                         "instead (which deletes it)")
    shutil.rmtree(folder / "backup", ignore_errors=True)
    return "none"


def _saved_differences(s: Settings, folder: Path) -> list[str]:
    """How these settings differ from the saved run's on what its training depends on."""
    from utils.experiments import NOT_HASHED, PATH_SETTINGS, TEST_TIME_SETTINGS, VALUE_BEFORE

    return s.differences(read_json(folder / "config.json")["settings"],
                         set(s) - NOT_HASHED - TEST_TIME_SETTINGS, PATH_SETTINGS, VALUE_BEFORE)


def report_is_current(s: Settings, report: Path) -> bool:
    """Whether ``report`` holds a test made with these scoring settings (pooling, test-time
    augmentation, ensemble members...). A report from before reports recorded them was made
    with its run's saved settings."""
    from utils.experiments import SCORING_SETTINGS, VALUE_BEFORE

    summary = report / "summary.json"
    if not summary.exists():
        return False
    scored_with = read_json(summary).get("scoring_settings")
    if scored_with is None:
        scored_with = read_json(run_dir(s) / "config.json")["settings"]
    return not s.differences(scored_with, SCORING_SETTINGS, (), VALUE_BEFORE)


def finished_training(s: Settings, overwrite: bool = False) -> dict | None:
    """The summary of a finished training of these settings in run_dir(s), if there is one: a
    run stopped between training and testing then only needs its test, not a new training."""
    if run_folder_state(s, overwrite) != "finished":
        return None
    log.info("%s holds a finished training with these settings: tested, not retrained", run_dir(s))
    return read_json(run_dir(s) / "train_summary.json")


def finished_run(s: Settings, report: Path, overwrite: bool = False) -> bool:
    """Whether run_dir(s) holds a finished training with these settings and, in ``report``, its
    test with these scoring settings; a run of other settings raises as in ``run_folder_state``."""
    return run_folder_state(s, overwrite) == "finished" and report_is_current(s, report)


def _forget_results(folder: Path) -> None:
    """A training about to start (or resume) replaces the folder's models, so the summary and the
    reports of earlier ones go: they must not pass for this training's (a reused fold, a benchmark
    seed) if it is interrupted. Reports of other models (a cross-validation's folds) stay."""
    (folder / "train_summary.json").unlink(missing_ok=True)
    own = [(folder / name).resolve() for name in ("best.keras", "last.keras", "snapshots")]
    for summary in folder.glob("test-*/summary.json"):
        scored = [Path(model).resolve() for model in read_json(summary).get("model", [])]
        if any(model == mine or mine in model.parents for model in scored for mine in own):
            shutil.rmtree(summary.parent)


def evaluate_step(s: Settings, folds: int = 0, overwrite: bool = False) -> dict:
    """Train then test (or K-fold cross-validation); append a row to RUNS_DIR/experiments.csv
    (not when a cross-validation only reported folds finished earlier). ``overwrite``: train
    over runs of other settings (see ``run_folder_state``)."""
    from utils.experiments import append_experiment, experiment_row

    if s["TEST_MODELS"]:  # before anything trains: the row and report would credit other models
        raise ValueError("evaluate.py tests the model it trains (each fold's own, in a cross-"
                         f"validation), but TEST_MODELS names others: {s['TEST_MODELS']}. Score "
                         "saved models with test.py, or leave TEST_MODELS empty here")
    if folds:
        result = crossval_step(s, folds, overwrite)
        if result["reused_folds"] == folds:
            log.info("every fold was finished earlier: no new row in experiments.csv")
            return result
        row = experiment_row(s, result, result["train_seconds"], f"{folds}-fold")
    else:
        trained = finished_training(s, overwrite) or train_step(s, overwrite=overwrite)
        result = {"train": trained, "test": test_step(s)}
        row = experiment_row(s, result["test"], trained["train_seconds"], s["TEST_SPLIT"])
    append_experiment(Path(s["RUNS_DIR"]) / "experiments.csv", row)
    return result


def crossval_step(s: Settings, folds: int, overwrite: bool = False) -> dict:
    """K runs RUN_NAME/fold<k>, each trained on the other folds, selected and tested on its own;
    the mean and spread of the metrics go to RUN_NAME/crossval.json, and one report over every
    held-out recording, each scored by the fold model that did not train on it, to
    RUN_NAME/test-crossval. A fold finished earlier with the same settings is reused, so an
    interrupted cross-validation resumes with its next fold."""
    from utils.evaluation import METRICS, TestOptions, merge_reports, scoring_summary, write_report
    from utils.experiments import fold_splits, fold_summary

    recordings = load_recordings(s["DATASET_DIR"])
    results, seconds, reused, tested_only = [], 0.0, 0, 0
    for k, splits in enumerate(fold_splits(recordings, folds, s["SEED"]), 1):
        fold = s.replace(f"fold {k}", RUN_NAME=f"{s['RUN_NAME']}/fold{k}")
        held_out = [r for r in recordings if splits.get(r.id) == "val"]
        report = run_dir(fold) / "test-fold"
        finished = run_folder_state(fold, overwrite) == "finished"
        if finished and report_is_current(fold, report):
            _check_held_out(report, held_out)
            log.info("cross-validation fold %d of %d: finished earlier, reused", k, folds)
            seconds += read_json(run_dir(fold) / "train_summary.json")["train_seconds"]
            results.append({**read_json(report / "summary.json"), "report": str(report)})
            reused += 1
            continue
        trained = finished and _trained_on(fold, splits)
        if trained:
            log.info("cross-validation fold %d of %d: trained earlier on this split, tested now", k, folds)
            tested_only += 1
        else:
            log.info("cross-validation fold %d of %d: %d training, %d held-out recordings", k, folds,
                     sum(v == "train" for v in splits.values()), len(held_out))
            # written before the training, whose summary comes last: a finished fold's split is known
            atomic_write_json(run_dir(fold) / FOLD_SPLIT_FILE, splits)
            trained = train_step(fold, splits, overwrite)
        seconds += trained["train_seconds"]
        results.append(test_step(fold, out=report, recordings=held_out))
    options = TestOptions.from_settings(s)  # every fold's report was scored so (report_is_current)
    merged = merge_reports([Path(r["report"]) for r in results], {r.id: r for r in recordings}, options)
    out = run_dir(s) / "test-crossval"
    merged.summary.update(split="crossval", folds=folds, model=[m for r in results for m in r["model"]],
                          models=results[0]["models"], scoring_settings=_scoring_settings(s),
                          **scoring_summary(options))
    write_report(out, merged)
    summary = {**fold_summary(results), "train_seconds": round(seconds, 1), "reused_folds": reused,
               "tested_only_folds": tested_only,
               "out_of_fold": {k: merged.summary[k] for k in ("scored", *METRICS)},
               "report": str(out),
               "per_fold": [{k: r[k] for k in ("mlrap", "top1_accuracy", "scored", "report")}
                            for r in results]}
    atomic_write_json(run_dir(s) / "crossval.json", summary)
    return summary


def _trained_on(fold: Settings, splits: Mapping[str, str]) -> dict | None:
    """The training summary of a finished fold stopped before its test, when it trained on
    exactly this split (a fold folder of an older version has no record of its split, so it
    trains again): testing a model on recordings it trained on would flatter it."""
    saved = run_dir(fold) / FOLD_SPLIT_FILE
    if not saved.exists():
        return None
    if read_json(saved) != dict(splits):
        log.info("%s trained on another split (did the dataset change?): trained again", run_dir(fold))
        return None
    return read_json(run_dir(fold) / "train_summary.json")


def _check_held_out(report: Path, held_out: list) -> None:
    """A reused fold must have been tested on this fold's recordings: the dataset or its split
    may have changed since it was trained."""
    from utils.evaluation import read_per_recording

    tested = set(read_per_recording(report)["recording"])
    if tested != {r.id for r in held_out}:
        raise ValueError(f"{report} was tested on other recordings than this fold holds now (did the "
                         "dataset change?); delete the cross-validation folder to run it again")


def _note_spec_differences(meta: dict, s: Settings) -> None:
    changed = spec_differences(meta["spec"], SpecParams.from_settings(s).to_dict())
    if changed:
        log.info("scoring with the model's own spectrogram settings; the config differs in: %s",
                 ", ".join(changed))


# ---------------------------------------------------------------- step 5

def submission_files(s: Settings) -> dict[str, Path]:
    """Recording id -> audio path for the files to score."""
    if s["SUBMISSION_AUDIO"]:
        folder = Path(s["SUBMISSION_AUDIO"])
        if not folder.is_dir():
            raise FileNotFoundError(f"SUBMISSION_AUDIO folder not found: {folder}")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        stems = [p.stem.casefold() for p in paths]  # output files may live on a case-blind disk
        unique = len(set(stems)) == len(stems)
        return {(p.stem if unique else p.relative_to(folder).with_suffix("").as_posix()): p
                for p in paths}
    return {r.id: r.path(s["DATASET_DIR"]) for r in load_recordings(s["DATASET_DIR"], s["TEST_SPLIT"])}


def submission_step(s: Settings) -> dict:
    use_backend(s["KERAS_BACKEND"])
    from utils.inference import TestTimeAugmentation, load_ensemble
    from utils.score_cache import ScoreCache, model_identity
    from utils.submission import SubmissionOptions, file_scores, output_path, write_submission

    options = SubmissionOptions.from_settings(s)
    tta = TestTimeAugmentation.from_settings(s)
    members, classes = load_ensemble(model_files(s), s["TEST_MODEL_WEIGHTS"], s["SCORING_RUNTIME"])
    files = submission_files(s)
    if not files:
        raise ValueError("no audio files to score")
    out = Path(s["SUBMISSION_FILE"]) if s["SUBMISSION_FILE"] else run_dir(s) / options.default_name
    done = {rec for rec in files if output_path(out, rec, options.format).exists()} \
        if options.per_file else set()
    if done:
        log.info("resuming: %d of %d files already have their output in %s", len(done), len(files), out)
    # finished files' scores wait here until the submission is written: a killed run resumes
    cache = ScoreCache(out.parent / f".{out.name}.scores", {
        "models": model_identity(model_files(s)), "weights": s["TEST_MODEL_WEIGHTS"],
        "options": asdict(options), "tta": asdict(tta), "segment": s["SEGMENT_LENGTH"]})
    workers = worker_count(s["SPEC_WORKERS"])
    with contextlib.ExitStack() as stack:  # one pool for every model of an ensemble
        pool = stack.enter_context(worker_pool(workers)) if workers > 1 and len(members) > 1 else None
        scored, skipped = file_scores(members, {k: v for k, v in files.items() if k not in done},
                                      options, s["PREDICT_BATCH_SIZE"], workers,
                                      tta, s["SEGMENT_LENGTH"], cache, pool)
    spec = members[0].params
    result = write_submission(scored, classes, options, out, band=(spec.fmin, spec.fmax))
    cache.clear()
    summary = {"file": str(out), "format": options.format, "recordings": len(scored),
               "already_done": len(done), "skipped": skipped, **result}
    atomic_write_json(submission_summary_path(out, options.per_file), summary)
    return summary


def submission_summary_path(out: Path, per_file: bool) -> Path:
    """Beside the submission file (``submission.summary.json``), or inside a per-file folder."""
    return out / "summary.json" if per_file else out.with_name(f"{out.stem}.summary.json")


def report_folder(s: Settings, name: str) -> Path:
    """A test report folder from a report folder, a run folder or a run name (for --compare)."""
    for candidate in (Path(name), Path(s["RUNS_DIR"]) / name):
        if (candidate / "summary.json").is_file():
            return candidate
        preferred = candidate / f"test-{s['TEST_SPLIT']}"
        if (preferred / "summary.json").is_file():
            return preferred
        reports = sorted(p.parent for p in candidate.glob("test-*/summary.json"))
        if len(reports) == 1:
            return reports[0]
    raise FileNotFoundError(f"no test report found for {name!r} (looked for summary.json in it, "
                            f"in its test-{s['TEST_SPLIT']}/ folder and under {s['RUNS_DIR']})")
