"""Step 5 logic: scores per file (monophone) or per window (soundscapes) into a submission file
of the chosen format, checked by that format's checker before the step reports success."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import formats as fm
from utils.audio import AudioError, audio_info
from utils.fileio import atomic_write_text
from utils.inference import Member, TestTimeAugmentation, ensemble_scores
from utils.labelmap import load_class_list, load_class_map, to_codes
from utils.pooling import Pooling, window_scores

log = logging.getLogger("bioacoustics")

MONOPHONE_FORMATS = ("topn_csv", "birdclef2018_mono")
BIRDCLEF2018_MONO_TOP = 100  # the 2018 task asked for 100 classes per file


@dataclass(frozen=True)
class SubmissionOptions:
    format: str = "topn_csv"
    pooling: Pooling = Pooling()          # monophone formats: chunks -> file
    window: float = 5.0                   # soundscape formats: seconds per row
    window_pooling: Pooling = Pooling("max")
    top_n: int = 5
    threshold: float = 0.5                # kaggle2021: a class is called at this score
    min_score: float = 0.1                # users' formats: detections below are not written
    class_map: str = ""                   # label -> challenge code table
    challenge_classes: str = ""           # kaggle_probabilities: the challenge's class list
    soundscape_overlap: float = 0.0       # chunk overlap when scoring per window; < 0: the model's

    def __post_init__(self):
        if self.format not in fm.FORMATS:
            raise ValueError(f"unknown SUBMISSION_FORMAT {self.format!r}; choose from {fm.FORMATS}")
        if self.format == "kaggle_probabilities" and not self.challenge_classes:
            raise ValueError("SUBMISSION_FORMAT kaggle_probabilities needs CHALLENGE_CLASSES (the "
                             "challenge's sample_submission.csv or taxonomy.csv)")
        if self.top_n < 1:
            raise ValueError("SUBMISSION_TOP_N must be at least 1")

    @classmethod
    def from_settings(cls, s) -> "SubmissionOptions":
        return cls(s["SUBMISSION_FORMAT"], Pooling.from_settings(s), s["SUBMISSION_WINDOW"],
                   Pooling(s["WINDOW_POOLING"], s["POOLING_TOP_K"], s["POOLING_ALPHA"]),
                   s["SUBMISSION_TOP_N"], s["CALL_THRESHOLD"], s["DETECTION_MIN_SCORE"],
                   s["CLASS_MAP"], s["CHALLENGE_CLASSES"], s["SOUNDSCAPE_OVERLAP"])

    @property
    def monophone(self) -> bool:
        return self.format in MONOPHONE_FORMATS

    @property
    def per_file(self) -> bool:
        """One output file per audio file: a re-run skips audio whose output exists."""
        return self.format in fm.PER_FILE_FORMATS

    @property
    def default_name(self) -> str:
        if self.per_file:
            return f"submission_{self.format}"  # a folder
        return "submission.csv" if self.format == "topn_csv" else f"submission_{self.format}.csv"


def output_path(out: Path, recording: str, fmt: str) -> Path:
    """Where a per-file format writes one recording's output."""
    suffix = ".Table.1.selections.txt" if fmt == "raven" else ".txt"
    path = Path(out) / f"{recording}{suffix}"
    if ".." in Path(recording).parts or Path(recording).is_absolute():
        raise ValueError(f"recording id {recording!r} would write outside {out}")
    return path


def file_scores(members: list[Member], files: dict[str, Path], options: SubmissionOptions,
                batch_size: int = 128, workers: int = 1, tta: TestTimeAugmentation = TestTimeAugmentation(),
                segment_seconds: float = 600.0, cache=None, pool=None
                ) -> tuple[list[fm.FileScores], list[dict]]:
    """Scores of every file for the format: one row per file, or one per window (``cache``: a
    ``ScoreCache`` that lets a killed run resume)."""
    durations, errors = {}, []
    for rec, path in files.items():
        try:
            durations[str(path)] = audio_info(path)[0]
        except AudioError as exc:
            errors.append({"file": str(path), "reason": exc.reason})
    paths = {str(p): rec for rec, p in files.items() if str(p) in durations}

    def per_window(scores, starts, path, params):
        return window_scores(starts, scores, params.chunk_length, durations[path], options.window,
                             options.window_pooling.method, k=options.window_pooling.top_k,
                             alpha=options.window_pooling.alpha)[1]

    reduce = options.pooling.per_file if options.monophone else per_window
    overlap = None if options.monophone or options.soundscape_overlap < 0 else options.soundscape_overlap
    results = ensemble_scores(members, list(paths), reduce, batch_size, workers, tta,
                              segment_seconds, cache, overlap, pool)
    out = []
    for path, (scores, _, error) in results.items():
        if scores is None:
            errors.append({"file": path, "reason": error})
            continue
        duration = durations[path]
        if options.monophone:
            out.append(fm.FileScores(paths[path], np.zeros(1), np.array([duration]), scores[None]))
        else:
            starts = options.window * np.arange(len(scores))
            out.append(fm.FileScores(paths[path], starts, np.minimum(starts + options.window, duration),
                                     scores))
    for error in errors:
        log.warning("skipped %s: %s", error["file"], error["reason"])
    return sorted(out, key=lambda f: f.recording), errors


def write_submission(files: list[fm.FileScores], classes: list[str], options: SubmissionOptions,
                     out: str | Path, band: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Write the format to ``out`` (a file, or a folder for one-file-per-recording formats) and
    check it; a file failing its check raises instead of being left looking valid."""
    out = Path(out)
    mapping = load_class_map(options.class_map) if options.class_map else None
    codes = to_codes(classes, mapping)
    kind, written, extra = options.format, [], {}
    if kind in fm.PER_FILE_FORMATS:
        for f in files:
            target = output_path(out, f.recording, kind)
            if kind == "raven":
                text = fm.raven_table(f, codes, options.min_score, *band)
                problems = fm.check_raven_table(text, codes, options.min_score)
            else:
                text = fm.audacity_labels(f, codes, options.min_score)
                problems = fm.check_audacity_labels(text, codes)
            _raise_on(problems, target)
            atomic_write_text(target, text)
            written.append(str(target))
        return {"written": written, "files": len(files)}
    if kind == "topn_csv":
        text = fm.topn_csv(files, codes, options.top_n)
        problems = fm.check_topn_csv(text, codes, options.top_n)
    elif kind == "birdclef2018_mono":
        text = fm.birdclef2018_mono(files, codes, BIRDCLEF2018_MONO_TOP)
        problems = fm.check_birdclef2018_mono(text, codes, BIRDCLEF2018_MONO_TOP)
    elif kind == "birdclef2018_soundscape":
        text = fm.birdclef2018_soundscape(files, codes, options.top_n)
        problems = fm.check_birdclef2018_soundscape(
            text, codes, {f.recording: float(f.ends[-1]) for f in files}, options.window)
    elif kind == "kaggle2021":
        text = fm.kaggle2021(files, codes, options.threshold)
        problems = fm.check_kaggle2021(text, codes)
    elif kind == "kaggle_probabilities":
        columns = load_class_list(options.challenge_classes)
        text, missing = fm.kaggle_probabilities(files, codes, columns)
        problems = fm.check_kaggle_probabilities(text, columns)
        unused = sorted(set(codes) - set(columns))
        extra = {"missing_classes": missing, "unused_classes": unused}
        if missing:
            log.warning("%d challenge classes are unknown to the model and get 0: %s", len(missing),
                        ", ".join(missing[:10]))
        if unused:
            log.warning("%d model classes are not in the challenge's list and are left out: %s",
                        len(unused), ", ".join(unused[:10]))
    else:  # detections_csv
        text = fm.detections_csv(files, codes, options.min_score)
        problems = fm.check_detections_csv(text, codes, options.min_score)
    _raise_on(problems, out)
    atomic_write_text(out, text)
    return {"written": [str(out)], "files": len(files), **extra}


def _raise_on(problems: list[str], target: Path) -> None:
    if problems:
        raise ValueError(f"{target} would fail its format check: {'; '.join(problems[:3])}")
