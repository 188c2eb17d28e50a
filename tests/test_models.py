import keras
import numpy as np
import pytest

from utils.model_io import load_model, save_model
from utils.models import (BackgroundRemoved, BlurDownsample, CepstrumPool, FrequencyPosition,
                          PoolOverTime, build_model, frame_score_model)

pytestmark = pytest.mark.backend  # also run on JAX by `make test`

SHAPE = (32, 64, 1)


@pytest.mark.parametrize("name, options", [
    ("baseline", {"filters": [8, 16, 16]}),
    ("baseline", {"filters": [8, 16], "downsampling": "stride", "dropout_type": "channel"}),
    ("resnet", {"filters": [8, 16], "width": 2, "blocks_per_stage": 2, "kernel_sizes": [5, 3]}),
    ("resnet", {"filters": [8, 16], "downsampling": "stride", "dropout_type": "location"}),
    ("resnet", {"filters": [8, 16, 16], "squeeze_excitation": True, "min_frequency_rows": 4,
                "head": "frequency"}),
    ("resnet", {"filters": [8, 16, 16], "downsampling": "stride", "squeeze_excitation": True,
                "min_frequency_rows": 4}),
    ("resnet", {"filters": [8, 16], "blocks_per_stage": 2, "drop_path": 0.3}),
    ("resnet", {"filters": [8, 16], "head": "attention"}),
    ("resnet", {"filters": [8, 16], "head": "attention", "multi_label": True}),
    ("resnet", {"filters": [8, 16], "head": "frequency", "frequency_channel": True}),
    ("resnet", {"filters": [8, 16], "head": "frequency", "cepstrum_features": True}),
    ("resnet", {"filters": [8, 16], "head": "frequency_global", "cepstrum_features": True,
                "frequency_channel": True}),
    ("baseline", {"filters": [8, 16], "cepstrum_features": True, "dropout_type": "channel"}),
    ("baseline", {"filters": [8, 16], "head": "frequency"}),
    ("pi", {"filters": [8, 16], "dense_units": 32, "frequency_channel": True}),
    ("pi", {"filters": [8, 16], "dense_units": 32, "cepstrum_features": True}),
    ("efficientnet_b0", {}),
    # the heads and channels on EfficientNet are the other families' layers: TensorFlow only
    pytest.param("efficientnet_b0", {"head": "frequency", "frequency_channel": True},
                 marks=pytest.mark.one_backend),
    pytest.param("efficientnet_b0", {"background_channel": True, "frequency_channel": True},
                 marks=pytest.mark.one_backend),
    ("resnet", {"filters": [8, 16], "head": "frequency_global", "background_channel": True}),
    ("resnet", {"filters": [8, 16], "downsampling": "blur", "min_frequency_rows": 8}),
    ("baseline", {"filters": [8, 16], "downsampling": "blur"}),
])
def test_every_family_builds_predicts_and_reloads(tmp_path, name, options):
    model = build_model(name, SHAPE, 3, **options)
    x = np.random.default_rng(0).random((2, *SHAPE)).astype("float32")
    scores = np.asarray(model.predict_on_batch(x))
    assert scores.shape == (2, 3) and np.isfinite(scores).all() and (scores >= 0).all()
    if not options.get("multi_label"):
        assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    save_model(model, tmp_path / "m.keras", {"classes": ["a", "b", "c"]})
    loaded, _ = load_model(tmp_path / "m.keras")  # safe mode: custom layers are registered
    assert np.allclose(np.asarray(loaded.predict_on_batch(x)), scores, atol=1e-5)


def test_width_and_blocks_grow_the_resnet():
    small = build_model("resnet", SHAPE, 3, filters=[8, 16]).count_params()
    wide = build_model("resnet", SHAPE, 3, filters=[8, 16], width=2).count_params()
    deep = build_model("resnet", SHAPE, 3, filters=[8, 16], blocks_per_stage=2).count_params()
    assert wide > 3 * small and deep > 1.5 * small


def test_attention_head_exposes_frame_scores():
    model = build_model("resnet", SHAPE, 3, filters=[8, 16], head="attention")
    frames = np.asarray(frame_score_model(model).predict_on_batch(np.zeros((1, *SHAPE), "float32")))
    assert frames.shape[0] == 1 and frames.shape[2] == 3 and frames.shape[1] > 1
    with pytest.raises(ValueError, match="no frame scores"):
        frame_score_model(build_model("resnet", SHAPE, 3, filters=[8]))


@pytest.mark.parametrize("stem, rows, columns", [((4, 4), 4, 8), ((2, 4), 8, 8), ((1, 2), 16, 16)])
def test_the_stem_shrinks_each_axis_by_its_own_factor(stem, rows, columns):
    model = build_model("resnet", (64, 128, 1), 3, filters=[8, 16, 16], stem_downsampling=stem)
    assert model.get_layer("body_out_relu").output.shape[1:3] == (rows, columns)


def test_the_stem_kernel_spans_the_rows_and_columns_asked_for():
    tall = build_model("resnet", (64, 128, 1), 3, filters=[8, 16], stem_kernel=[15, 3])
    assert tuple(tall.get_layer("stem_conv").kernel.shape) == (15, 3, 1, 8)
    assert tuple(build_model("resnet", (64, 128, 1), 3, filters=[8]).get_layer(
        "stem_conv").kernel.shape) == (5, 5, 1, 8)  # the default
    # "same" padding: the stem's output keeps its size whatever the kernel
    assert tall.get_layer("body_out_relu").output.shape[1:3] == (8, 16)


@pytest.mark.parametrize("downsampling", ["pool", "blur", "stride"])
@pytest.mark.parametrize("min_rows, rows", [(0, 2), (8, 8), (16, 16), (4, 4)])
def test_stages_stop_halving_frequency_at_min_frequency_rows(downsampling, min_rows, rows):
    """The stem leaves 16 rows and 32 columns; three halving stages follow. Time is halved in
    every one of them, frequency only while more than MIN_FREQUENCY_ROWS rows are left."""
    model = build_model("resnet", (64, 128, 1), 3, filters=[8, 8, 8, 8], downsampling=downsampling,
                        min_frequency_rows=min_rows)
    assert model.get_layer("body_out_relu").output.shape[1:3] == (rows, 4)


def _binomial(order: int) -> np.ndarray:
    taps = np.array([1.0])
    for _ in range(order if order > 1 else 0):
        taps = np.convolve(taps, [1.0, 1.0])
    return taps / taps.sum()


@pytest.mark.parametrize("factor", [(2, 2), (4, 4), (1, 2), (4, 2)])
def test_blur_downsample_is_a_binomial_filter_then_a_subsample(factor):
    from scipy.signal import correlate2d
    image = np.random.default_rng(4).random((1, 16, 16, 1)).astype("float32")
    blurred = np.asarray(BlurDownsample(factor)(image))
    assert blurred.shape == (1, 16 // factor[0], 16 // factor[1], 1)
    kernel = np.outer(_binomial(factor[0]), _binomial(factor[1]))
    expected = correlate2d(image[0, :, :, 0], kernel, mode="valid")[::factor[0], ::factor[1]]
    rows, columns = expected.shape  # away from the bottom and right edges, where it pads
    assert np.allclose(blurred[0, :rows, :columns, 0], expected, atol=1e-5)
    flat = np.full((2, 9, 7, 3), 2.5, "float32")  # the edges too: a flat image stays flat
    assert np.allclose(BlurDownsample(factor)(flat), 2.5)
    assert BlurDownsample(factor)(flat).shape[1:3] == (-(-9 // factor[0]), -(-7 // factor[1]))


def test_blurred_pooling_moves_smoothly_when_the_image_moves_a_row():
    """What DOWNSAMPLING "blur" is for: moving the image by two rows moves the pooled features by
    one of theirs, so moving it by one row should give features halfway between those two. After
    plain stride-2 max pooling they are far from halfway; after the blurred subsample they are
    about twice as close."""
    import keras
    noise = np.random.default_rng(5).normal(size=(1, 68, 32, 4))
    images = [noise[:, move:move + 64].astype("float32") for move in range(3)]
    plain = keras.layers.MaxPooling2D(2)
    blurred = keras.Sequential([keras.layers.MaxPooling2D(2, strides=1, padding="same"),
                                BlurDownsample((2, 2))])

    def off_halfway(pool):
        still, one_row, two_rows = (np.asarray(pool(x))[:, 2:-2, 2:-2] for x in images)  # no edges
        return np.abs(one_row - (still + two_rows) / 2).mean() / still.std()
    assert off_halfway(blurred) < 0.6 * off_halfway(plain)


def test_squeeze_excitation_gates_each_blocks_residual_branch():
    """A gate shut (sigmoid of a large negative bias) leaves only the shortcut: the block's output
    is then its input, so the wiring puts the gate on the residual branch, not the sum."""
    import keras
    model = build_model("resnet", SHAPE, 3, filters=[8, 8], squeeze_excitation=True)
    gates = [layer for layer in model.layers if layer.name.endswith("_se_expand")]
    assert [g.name for g in gates] == ["stage1_block1_se_expand", "stage2_block1_se_expand"]
    x = np.random.default_rng(2).random((2, *SHAPE)).astype("float32")
    block_in = keras.Model(model.inputs, model.get_layer("stage2_pool").output)
    block_out = keras.Model(model.inputs, model.get_layer("stage2_block1_add").output)
    gate_out = keras.Model(model.inputs, model.get_layer("stage2_block1_se_expand").output)
    gate = np.asarray(gate_out.predict_on_batch(x))
    assert gate.shape == (2, 1, 1, 8) and ((gate > 0) & (gate < 1)).all()
    kernel, bias = gates[1].get_weights()
    gates[1].set_weights([np.zeros_like(kernel), np.full_like(bias, -100.0)])
    assert np.allclose(block_out.predict_on_batch(x), block_in.predict_on_batch(x), atol=1e-6)
    without = build_model("resnet", SHAPE, 3, filters=[8, 8])
    assert not any(layer.name.endswith("_se") for layer in without.layers)


def test_drop_path_skips_whole_residual_branches_more_often_deeper():
    """Stochastic depth: block k of n is skipped with chance DROP_PATH * k / n, for a whole sample
    at once. In a block without projection a skipped sample leaves it unchanged; at inference
    none is skipped."""
    import keras
    model = build_model("resnet", SHAPE, 3, filters=[8, 8], blocks_per_stage=2, drop_path=0.8)
    drops = [layer for layer in model.layers if layer.name.endswith("_drop_path")]
    assert [(d.name, round(d.rate, 6)) for d in drops] == [
        ("stage1_block1_drop_path", 0.2), ("stage1_block2_drop_path", 0.4),
        ("stage2_block1_drop_path", 0.6), ("stage2_block2_drop_path", 0.8)]
    last_block = keras.Model(model.input, [model.get_layer("stage2_block1_add").output,
                                           model.get_layer("stage2_block2_add").output])
    x = np.random.default_rng(3).random((64, *SHAPE)).astype("float32")
    keras.utils.set_random_seed(0)
    block_in, block_out = (np.asarray(v) for v in last_block(x, training=True))
    unchanged = np.isclose(block_in, block_out, atol=1e-6)
    skipped = unchanged.all(axis=(1, 2, 3))
    assert 30 < skipped.sum() < 64  # about 0.8 of 64 samples
    assert unchanged[~skipped].mean(axis=(1, 2, 3)).max() < 0.5  # whole samples, not pixels
    block_in, block_out = (np.asarray(v) for v in last_block(x, training=False))
    assert not np.isclose(block_in, block_out, atol=1e-6).all(axis=(1, 2, 3)).any()
    assert not any(layer.name.endswith("_drop_path") for layer in build_model("resnet", SHAPE, 3,
                                                                              filters=[8]).layers)


@pytest.mark.parametrize("bad", [{"head": "gru"}, {"dropout_type": "gaussian"}, {"downsampling": "avg"},
                                 {"stem_downsampling": (3, 4)}, {"stem_downsampling": (4,)},
                                 {"stem_kernel": (5,)}, {"stem_kernel": (0, 5)},
                                 {"min_frequency_rows": -1}, {"drop_path": 1.0}, {"drop_path": -0.1}])
def test_bad_model_options_are_refused(bad):
    with pytest.raises(ValueError):
        build_model("resnet", SHAPE, 3, filters=[8], **bad)
    with pytest.raises(ValueError, match="unknown MODEL"):
        build_model("vgg", SHAPE, 3)
    with pytest.raises(ValueError, match="dense head"):
        build_model("pi", SHAPE, 3, head="attention")
    for name in ("resnet", "baseline"):
        with pytest.raises(ValueError, match="CEPSTRUM_FEATURES"):
            build_model(name, SHAPE, 3, filters=[8], head="attention", cepstrum_features=True)


def test_frequency_position_and_pooling_over_time_by_hand():
    x = np.random.default_rng(1).random((2, 5, 7, 3)).astype("float32")
    with_rows = np.asarray(FrequencyPosition()(x))
    assert with_rows.shape == (2, 5, 7, 4) and np.allclose(with_rows[..., :3], x)
    assert np.allclose(with_rows[0, :, 3, 3], [0, 0.25, 0.5, 0.75, 1])  # bottom row 0, top row 1
    pooled = np.asarray(PoolOverTime()(x))
    expected = np.concatenate([x.mean(axis=2), x.max(axis=2)], axis=-1).reshape(2, -1)
    assert np.allclose(pooled, expected, atol=1e-6)


def test_background_channel_keeps_what_comes_and_goes_and_drops_what_stays():
    """A row at a steady level, a row with a call in 2 of its 7 columns: the added channel is 0
    for the steady row and for the call row's quiet columns, the call's excess where it sounds."""
    x = np.full((1, 2, 7, 1), 0.3, dtype="float32")
    x[0, 1, :, 0] = 0.1
    x[0, 1, 2:4, 0] = 0.9
    out = np.asarray(BackgroundRemoved()(x))
    assert out.shape == (1, 2, 7, 2) and np.allclose(out[..., 0], x[..., 0])
    assert np.allclose(out[0, 0, :, 1], 0)
    assert np.allclose(out[0, 1, :, 1], [0, 0, 0.8, 0.8, 0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("options, colours", [
    ({}, ["grey", "grey", "grey"]),
    ({"frequency_channel": True}, ["grey", "grey", "position"]),
    ({"background_channel": True, "frequency_channel": True}, ["grey", "background", "position"]),
])
def test_efficientnet_sees_the_added_channels_as_colours(options, colours):
    """Until the added channels' layers said their output shape, EfficientNet took a channel
    count of None for 'not 2' and silently dropped the frequency position."""
    model = build_model("efficientnet_b0", SHAPE, 3, **options)
    rgb = keras.Model(model.input, model.get_layer("grey_to_rgb").output)
    x = np.random.default_rng(2).random((1, *SHAPE)).astype("float32")
    got = np.asarray(rgb(x))[0] / 255.0
    expected = {"grey": x[0, ..., 0],
                "background": x[0, ..., 0] - np.median(x[0, ..., 0], axis=1, keepdims=True),
                "position": np.broadcast_to(np.linspace(0, 1, SHAPE[0])[:, None], SHAPE[:2])}
    for channel, name in enumerate(colours):
        assert np.allclose(got[..., channel], expected[name], atol=1e-5), (channel, name)


def test_cepstrum_turns_evenly_spaced_lines_into_one_peak_at_their_spacing():
    """Lines every 8 rows (a pulse train's harmonics) peak at quefrency bin 64 / 8 = 8, twice that
    for lines every 4 rows; moving the lines along frequency changes nothing."""
    rows, columns = 64, 10
    features = {}
    for spacing in (8, 4):
        image = np.zeros((1, rows, columns, 1), "float32")
        image[0, ::spacing, :, 0] = 1.0
        shifted = np.roll(image, 3, axis=1)
        out = np.asarray(CepstrumPool()(image))
        assert out.shape == (1, 2 * (rows // 2 + 1))
        assert np.allclose(np.asarray(CepstrumPool()(shifted)), out, atol=1e-5)
        mean, peak = out[0, :rows // 2 + 1], out[0, rows // 2 + 1:]
        assert np.allclose(mean, peak, atol=1e-5)  # every column the same
        features[spacing] = mean
    assert np.argmax(features[8][1:]) + 1 == 8 and np.argmax(features[4][1:]) + 1 == 16
    assert features[8][0] < 1e-3  # the column's level is removed: it is in the image already


def test_frequency_head_tells_bands_apart_where_global_pooling_cannot():
    """The same blob low or high in the image: identical after global average pooling of a
    translation-equivariant body, different for the frequency head."""
    low, high = np.zeros((1, *SHAPE), "float32"), np.zeros((1, *SHAPE), "float32")
    low[0, 4:8, 20:28], high[0, 20:24, 20:28] = 1.0, 1.0
    features = {}
    for head in ("pool", "frequency"):
        model = build_model("resnet", SHAPE, 3, filters=[8, 16], head=head)
        pooled = model.get_layer("dropout").input
        import keras
        probe = keras.Model(model.inputs, pooled)
        features[head] = [np.asarray(probe.predict_on_batch(x)) for x in (low, high)]
    differ = {h: float(np.abs(a - b).max()) for h, (a, b) in features.items()}
    assert differ["frequency"] > 10 * max(differ["pool"], 1e-6)


def test_frequency_global_head_sees_the_band_and_what_is_the_same_in_any_band():
    """Its per-band part tells the low blob from the high one; its whole-chunk part does not."""
    import keras

    shape = (96, 64, 1)  # room for both blobs away from the edges, where padding changes things
    low, high = np.zeros((1, *shape), "float32"), np.zeros((1, *shape), "float32")
    low[0, 24:28, 20:28], high[0, 64:68, 20:28] = 1.0, 1.0  # 40 rows apart: a multiple of 8, the body's stride
    model = build_model("resnet", shape, 3, filters=[8, 16], head="frequency_global")
    parts = ("pool_over_time", "global_mean", "global_max")
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in parts])
    differ = {name: float(np.abs(np.asarray(a) - np.asarray(b)).max())
              for name, a, b in zip(parts, probe.predict_on_batch(low), probe.predict_on_batch(high))}
    assert differ["pool_over_time"] > 10 * max(differ["global_mean"], differ["global_max"], 1e-6)
    width = model.get_layer("per_band_and_global").output.shape[-1]
    assert width == model.get_layer("pool_over_time").output.shape[-1] + 2 * 16


def test_a_fresh_process_loads_models_with_custom_layers(tmp_path):
    """test.py and the submission step load models before anything imports utils.models."""
    import subprocess
    import sys
    from pathlib import Path

    model = build_model("resnet", SHAPE, 3, filters=[8], head="attention", frequency_channel=True,
                        dropout_type="location")
    save_model(model, tmp_path / "m.keras", {"classes": ["a", "b", "c"]})
    code = ("import sys; from utils.model_io import load_model; "
            "m, meta = load_model(sys.argv[1]); print(m.output_shape, meta['classes'])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(None, 3) ['a', 'b', 'c']" in done.stdout
