import json

import pytest

from utils.settings import ConfigError, load_settings, save_settings


@pytest.fixture
def defaults(tmp_path):
    path = tmp_path / "defaults.py"
    path.write_text(
        "from typing import Literal\n"
        "EPOCHS = 30\nLEARNING_RATE = 0.001\nRUN_NAME = 'default'\nFILTERS = [16, 32]\n"
        "MULTI_LABEL = False\nPOOLING: Literal['mean', 'max'] = 'mean'\n"
        "TEACHER: str | None = None\nhelper = 'lower-case names are not settings'\n")
    return path


def test_defaults_are_the_file_values(defaults):
    s = load_settings(defaults)
    assert s.EPOCHS == 30 and s["RUN_NAME"] == "default" and s.FILTERS == [16, 32]
    assert "helper" not in s


def test_override_file_then_set_pairs_in_order(defaults, tmp_path):
    override = tmp_path / "exp.py"
    override.write_text("EPOCHS = 5\nRUN_NAME = 'exp'\n")
    s = load_settings(defaults, override, ["EPOCHS=7", "FILTERS=[8, 8, 8]", "POOLING=max"])
    assert (s.EPOCHS, s.RUN_NAME, s.FILTERS, s.POOLING) == (7, "exp", [8, 8, 8], "max")


def test_set_values_are_typed(defaults):
    s = load_settings(defaults, None, ["LEARNING_RATE=1", "RUN_NAME=123", "MULTI_LABEL=True",
                                       "TEACHER=runs/a/best.keras"])
    assert s.LEARNING_RATE == 1.0 and isinstance(s.LEARNING_RATE, float)
    assert s.RUN_NAME == "123" and s.MULTI_LABEL is True and s.TEACHER == "runs/a/best.keras"
    assert load_settings(defaults, None, ["TEACHER=None"]).TEACHER is None


def test_unknown_key_names_the_closest_one(defaults, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting EPOCH \(did you mean EPOCHS\?\)"):
        load_settings(defaults, None, ["EPOCH=3"])
    override = tmp_path / "bad.py"
    override.write_text("LEARNING_RAT = 0.1\n")
    with pytest.raises(ConfigError, match="bad.py: unknown setting LEARNING_RAT .*LEARNING_RATE"):
        load_settings(defaults, override)


@pytest.mark.parametrize("pair, expected", [
    ("EPOCHS=ten", "EPOCHS"), ("EPOCHS=2.5", "EPOCHS"), ("MULTI_LABEL=1", "MULTI_LABEL"),
    ("POOLING=median", "POOLING"), ("FILTERS=[8, 'x']", "FILTERS"), ("EPOCHS", "KEY=VALUE"),
])
def test_bad_values_name_the_key(defaults, pair, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(defaults, None, [pair])


def test_settings_are_read_only(defaults):
    s = load_settings(defaults)
    with pytest.raises(AttributeError):
        s.EPOCHS = 3
    changed = s.replace(EPOCHS=3)
    assert changed.EPOCHS == 3 and s.EPOCHS == 30
    with pytest.raises(ConfigError):
        s.replace(EPOCHS="3")


def test_saved_config_reproduces_the_run(defaults, tmp_path):
    s = load_settings(defaults, None, ["EPOCHS=9", "FILTERS=[4]"])
    save_settings(s, tmp_path / "run" / "config.json")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["settings"]["EPOCHS"] == 9 and "--set EPOCHS=9" in saved["sources"]
    again = load_settings(defaults, tmp_path / "run" / "config.json")
    assert again.to_dict() == s.to_dict()


def test_project_config_loads_and_every_override_file_is_valid():
    from pathlib import Path

    from utils.cli import DEFAULTS_FILE

    base = load_settings(DEFAULTS_FILE)
    assert base.SAMPLE_RATE > 0 and base.IMAGE_WIDTH > 0
    for override in sorted((Path(DEFAULTS_FILE).parent / "configs").glob("*.py")):
        assert load_settings(DEFAULTS_FILE, override).sources[-1] == str(override)


def test_every_testing_and_submission_setting_is_classed_as_test_time_or_scoring():
    """A finished training is re-tested, not refused, when only TEST_TIME_SETTINGS differ, so a
    setting added to config.py's testing or submission section must be classed on purpose: as
    test-time (training never reads it) or, like POOLING, as one a training can depend on."""
    import re
    from pathlib import Path

    from utils.experiments import SCORING_SETTINGS, TEST_TIME_SETTINGS

    text = (Path(__file__).resolve().parents[1] / "config.py").read_text()
    tail = text[text.index("testing (step 4)"):]
    keys = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:=]", tail, flags=re.M))
    assert keys == TEST_TIME_SETTINGS | SCORING_SETTINGS
    assert SCORING_SETTINGS - TEST_TIME_SETTINGS == {"POOLING", "POOLING_TOP_K", "POOLING_ALPHA"}
