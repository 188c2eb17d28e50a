"""Keras 3 models (keras and keras.ops only, so every backend runs them).

Families: "baseline" (the 2018 baseline's plain CNN: conv groups with batch norm and max pooling,
plain or anti-aliased, or strided convolutions), "pi" (the baseline's small model: strided
convolutions and two dense layers), "resnet" (a pre-activation wide ResNet: FILTERS times WIDTH
per stage, BLOCKS_PER_STAGE blocks, optionally with squeeze-and-excitation and stochastic
depth), and "efficientnet_b0".."efficientnet_b3" (keras.applications, random weights: nothing is
downloaded).
Heads: "frequency" (mean and max over time per frequency band), "pool" (global average pooling)
or "attention" (sound event detection: per-frame scores and attention over time, pooled to clip
scores; the frame scores stay reachable through :func:`frame_score_model`).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

MODELS = ("baseline", "resnet", "pi", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
          "efficientnet_b3")
HEADS = ("pool", "attention", "frequency", "frequency_global")
DROPOUT_TYPES = ("random", "channel", "location")
# Faster-moving statistics than Keras' 0.99: bioacoustic training sets are often small, and with
# few steps per epoch 0.99 leaves inference-mode statistics far from the data for many epochs.
BN_MOMENTUM = 0.9
FRAME_SCORES = "frame_scores"


@dataclass(frozen=True)
class ModelOptions:
    filters: tuple[int, ...] = (16, 32, 64, 128)
    kernel_sizes: tuple[int, ...] = (3,)      # per stage; the last one repeats
    blocks_per_stage: int = 1
    width: int = 1                            # wide-ResNet multiplier K
    downsampling: str = "pool"                # "pool" (max pooling), "blur" (max, blur, subsample)
                                              # or "stride" (strided convs)
    dropout: float = 0.5
    dropout_type: str = "random"
    head: str = "pool"
    multi_label: bool = False
    l2: float = 0.0
    dense_units: int = 512                    # "pi": width of its two dense layers
    frequency_channel: bool = False           # add an input channel holding each row's position
    background_channel: bool = False          # add an input channel: each row less its median over time
    stem_downsampling: tuple[int, int] = (4, 4)  # resnet stem: (frequency, time) factor, 1, 2 or 4
    stem_kernel: tuple[int, int] = (5, 5)     # resnet stem convolution: (frequency rows, time columns)
    cepstrum_features: bool = False           # head also sees the input's cepstrum (not "attention")
    squeeze_excitation: bool = False          # resnet: each block reweights its channels (SE)
    min_frequency_rows: int = 0               # resnet stages stop halving frequency at this many rows
    drop_path: float = 0.0                    # resnet: chance the deepest block's branch is skipped


def _dropout(rate: float, kind: str, name: str):
    if kind == "channel":  # whole feature maps
        return layers.SpatialDropout2D(rate, name=name)
    if kind == "location":  # the same pixels in every channel
        return _LocationDropout(rate, name=name)
    return layers.Dropout(rate, name=name)


@keras.saving.register_keras_serializable(package="bioacoustics")
class _LocationDropout(layers.Layer):
    """Drop the same time-frequency positions across all channels."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        shape = (ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2], 1)
        keep = keras.random.uniform(shape, seed=self.seed_generator) >= self.rate
        return x * ops.cast(keep, x.dtype) / (1.0 - self.rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="bioacoustics")
class MeanOverFrequency(layers.Layer):
    """(batch, freq, time, channels) -> (batch, time, channels)."""

    def call(self, x):
        return ops.mean(x, axis=1)


class _AddedChannel(layers.Layer):
    """The input with one channel appended, ``channel(x)``: the added channels' common part, which
    also says the output shape (unsaid, the channel count is unknown to the layers after it)."""

    def channel(self, x):
        raise NotImplementedError

    def call(self, x):
        return ops.concatenate([x, self.channel(x)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="bioacoustics")
class BackgroundRemoved(_AddedChannel):
    """Append a channel that holds each row less its median over the chunk: a row's steady part
    (background noise, the recorder's colouring, a song that never stops) is gone and what comes
    and goes stands out, while the first channel keeps the whole picture."""

    def channel(self, x):
        grey = x[..., 0]
        columns = grey.shape[-1]
        # the median from the top half (top_k, where ops.median's sort has no LiteRT kernel)
        top = ops.top_k(grey, columns // 2 + 1)[0]
        middle = top[..., -1:] if columns % 2 else (top[..., -1:] + top[..., -2:-1]) / 2
        return ops.expand_dims(grey - middle, -1)


@keras.saving.register_keras_serializable(package="bioacoustics")
class FrequencyPosition(_AddedChannel):
    """Append a channel that holds each row's position in the band (0 at the bottom, 1 at the
    top), so that convolutions, which look the same everywhere, can tell a 3-kHz call from a
    10-kHz one of the same shape (CoordConv)."""

    def channel(self, x):
        rows = ops.shape(x)[1]
        ramp = ops.cast(ops.arange(rows), x.dtype) / ops.cast(ops.maximum(rows - 1, 1), x.dtype)
        return ops.broadcast_to(ops.reshape(ramp, (1, -1, 1, 1)), ops.shape(x[..., :1]))


@keras.saving.register_keras_serializable(package="bioacoustics")
class PoolOverTime(layers.Layer):
    """(batch, freq, time, channels) -> (batch, freq * 2 * channels): mean and max over time for
    each frequency band, so the classifier still sees in which band each feature fired."""

    def call(self, x):
        pooled = ops.concatenate([ops.mean(x, axis=2), ops.max(x, axis=2)], axis=-1)
        return ops.reshape(pooled, (ops.shape(x)[0], -1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * 2 * input_shape[3])


@keras.saving.register_keras_serializable(package="bioacoustics")
class CepstrumPool(layers.Layer):
    """(batch, freq, time, channels) spectrogram -> (batch, 2 * (freq // 2 + 1)): the magnitude of
    each column's Fourier transform along frequency (its cepstrum, as the image is a log spectrum),
    mean and max over time. Evenly spaced spectral lines (a pulse train's rate, a call's harmonics)
    become one peak whose position is their spacing, wherever in the band they lie; a shift along
    frequency (the `roll_v` augmentation) leaves it unchanged."""

    def call(self, x):
        columns = ops.transpose(x[..., 0], (0, 2, 1))                  # (batch, time, freq)
        columns = columns - ops.mean(columns, axis=-1, keepdims=True)  # the level is in the image
        real, imag = ops.rfft(columns)
        rows = ops.cast(ops.shape(columns)[-1], columns.dtype)
        magnitude = ops.sqrt(real * real + imag * imag + 1e-12) / ops.sqrt(rows)
        return ops.concatenate([ops.mean(magnitude, axis=1), ops.max(magnitude, axis=1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * (input_shape[1] // 2 + 1))


@keras.saving.register_keras_serializable(package="bioacoustics")
class BlurDownsample(layers.Layer):
    """Subsample each axis by its factor f after a binomial low-pass filter of order f ([1, 2, 1] / 4
    for 2, [1, 4, 6, 4, 1] / 16 for 4, none for 1), per channel. Max pooling evaluated at every
    position and then this ("MaxBlurPool", Zhang 2019, "Making convolutional networks
    shift-invariant again") keeps a pattern's features nearly the same when it moves by a row or
    a column, where plain strided max pooling can change them abruptly. The filter is f two-tap
    means in a row, the last one strided: pooling ops, much faster on CPUs than a depthwise
    convolution. At the edges the means count only the image's own pixels, so a flat image stays
    flat."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = tuple(int(f) for f in factor)

    def call(self, x):
        for step in range(max(self.factor) - 1):
            x = ops.average_pool(x, tuple(2 if step < f - 1 else 1 for f in self.factor),
                                 strides=1, padding="same")
        return ops.average_pool(x, tuple(min(f, 2) for f in self.factor), strides=self.factor,
                                padding="same")

    def compute_output_shape(self, input_shape):
        sizes = [None if n is None else -(-n // f) for n, f in zip(input_shape[1:3], self.factor)]
        return (input_shape[0], *sizes, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _max_pool(x, factor, blur: bool, name: str):
    """Max pooling by ``factor``; anti-aliased (max at every position, then a blurred subsample)
    when ``blur``."""
    if not blur:
        return layers.MaxPooling2D(factor, name=name)(x)
    x = layers.MaxPooling2D(factor, strides=1, padding="same", name=f"{name}_dense")(x)
    return BlurDownsample(factor, name=name)(x)


@keras.saving.register_keras_serializable(package="bioacoustics")
class AttentionPool(layers.Layer):
    """Clip scores: frame scores weighted by attention over time."""

    def call(self, inputs):
        scores, attention = inputs
        return ops.sum(scores * attention, axis=1)


@keras.saving.register_keras_serializable(package="bioacoustics")
class SumToOne(layers.Layer):
    """Rescale non-negative scores to a distribution (for categorical cross-entropy)."""

    def call(self, x):
        return x / (ops.sum(x, axis=-1, keepdims=True) + 1e-7)


def _kernel(options: ModelOptions, stage: int) -> int:
    return options.kernel_sizes[min(stage, len(options.kernel_sizes) - 1)]


def _conv(filters, kernel, stride, l2, name):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_regularizer=l2, name=name)


def _bn_relu(x, name):
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _squeeze_excite(x, name: str, l2=None):
    """Squeeze-and-excitation (Hu et al. 2018): the block's channels are reweighted by a gate
    computed from their means over the whole image, so a feature can be turned up or down by
    what else the chunk holds."""
    channels = x.shape[-1]
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    gate = layers.Dense(max(channels // 4, 4), activation="relu", kernel_regularizer=l2,
                        name=f"{name}_se_reduce")(gate)
    gate = layers.Dense(channels, activation="sigmoid", kernel_regularizer=l2,
                        name=f"{name}_se_expand")(gate)
    return layers.Multiply(name=f"{name}_se")([x, gate])


def _residual_block(x, filters: int, kernel: int, stride: tuple[int, int], name: str, l2=None,
                    squeeze_excitation: bool = False, drop_path: float = 0.0):
    """Pre-activation residual block: BN-ReLU-Conv-BN-ReLU-Conv (then SE when asked) plus a
    (projected) shortcut. With ``drop_path`` a training step skips the whole branch for that
    share of the samples (stochastic depth, Huang et al. 2016): the shortcut alone carries them."""
    shortcut = x
    y = _bn_relu(x, f"{name}_1")
    if stride != (1, 1) or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, l2, f"{name}_proj")(y)
    y = _conv(filters, kernel, stride, l2, f"{name}_conv1")(y)
    y = _bn_relu(y, f"{name}_2")
    y = _conv(filters, kernel, 1, l2, f"{name}_conv2")(y)
    if squeeze_excitation:
        y = _squeeze_excite(y, name, l2)
    if drop_path > 0:  # one draw per sample (not per pixel); kept branches are scaled up by 1/(1-p)
        y = layers.Dropout(drop_path, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def resnet_body(x, options: ModelOptions, l2):
    """Strided stem, then residual stages that halve the resolution (pooling or strides).

    The stem shrinks each axis by 4 (a strided convolution, then max pooling) unless
    ``stem_downsampling`` says less: fine frequency structure (harmonics or pulse-rate sidebands a
    few rows apart) then reaches the first residual stage unmerged, at that stage's cost. A taller
    ``stem_kernel`` lets the stem's filters span such structure before the frequency axis is pooled.
    ``min_frequency_rows`` stops the stages halving the frequency axis once it is that small (they
    go on halving time), so the frequency head gets narrower bands. ``drop_path`` is the deepest
    block's chance of being skipped; earlier blocks' chances fall linearly with depth, as in the
    stochastic-depth paper (the early blocks compute what every later one needs). Under
    ``downsampling`` "blur" the stages' pools are anti-aliased, the stem's is not."""
    conv_stride = tuple(min(factor, 2) for factor in options.stem_downsampling)
    pool = tuple(factor // stride for factor, stride in zip(options.stem_downsampling, conv_stride))
    stem_filters = options.filters[0] * options.width
    x = _conv(stem_filters, options.stem_kernel, conv_stride, l2, "stem_conv")(x)
    x = _bn_relu(x, "stem")
    if pool != (1, 1):
        # plain even under "blur": anti-aliased at this resolution it took 35-45 % more training
        # time (at width 2 on 256x256 images), the stages' pools together 5 %
        x = layers.MaxPooling2D(pool, name="stem_pool")(x)
    depth = len(options.filters) * options.blocks_per_stage
    for stage, base in enumerate(options.filters):
        width = base * options.width
        halve = (1 if x.shape[1] <= options.min_frequency_rows else 2, 2)
        for block in range(options.blocks_per_stage):
            first = stage > 0 and block == 0
            stride = halve if first and options.downsampling == "stride" else (1, 1)
            if first and options.downsampling != "stride":
                x = _max_pool(x, halve, options.downsampling == "blur", f"stage{stage + 1}_pool")
            position = stage * options.blocks_per_stage + block + 1
            x = _residual_block(x, width, _kernel(options, stage), stride,
                                f"stage{stage + 1}_block{block + 1}", l2, options.squeeze_excitation,
                                options.drop_path * position / depth)
    return _bn_relu(x, "body_out")


def baseline_body(x, options: ModelOptions, l2):
    """The 2018 baseline's plain CNN: per group Conv-BN-ReLU, then max pooling or a strided conv."""
    for group, base in enumerate(options.filters):
        for block in range(options.blocks_per_stage):
            x = _conv(base * options.width, _kernel(options, group), 1, l2,
                      f"group{group + 1}_conv{block + 1}")(x)
            x = _bn_relu(x, f"group{group + 1}_{block + 1}")
        if options.downsampling != "stride":
            x = _max_pool(x, (2, 2), options.downsampling == "blur", f"group{group + 1}_pool")
        else:
            x = _conv(base * options.width, 3, 2, l2, f"group{group + 1}_down")(x)
            x = _bn_relu(x, f"group{group + 1}_down")
    # the baseline ends its body with a 1x1 convolution to twice the last width
    x = _conv(options.filters[-1] * options.width * 2, 1, 1, l2, "final_1x1")(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name="final_1x1_bn")(x)


def pi_body(x, options: ModelOptions, l2):
    """The 2018 baseline's "Pi" model for small devices: strided conv groups, then two dense
    layers with dropout (the classifier follows)."""
    for group, base in enumerate(options.filters):
        x = _conv(base * options.width, _kernel(options, group), 2, l2, f"group{group + 1}_conv")(x)
        x = _bn_relu(x, f"group{group + 1}")
    x = layers.Flatten(name="flatten")(x)
    for k in (1, 2):
        x = layers.Dense(options.dense_units, activation="relu", kernel_regularizer=l2, name=f"dense{k}")(x)
        x = layers.Dropout(options.dropout, name=f"dense{k}_dropout")(x)
    return x


def efficientnet_body(x, variant: str):
    """keras.applications EfficientNet with random weights (weights=None: nothing downloaded);
    the grey spectrogram is repeated to the three channels the architecture expects, and scaled
    to 0-255 because the network starts by dividing by 255."""
    builders = {"efficientnet_b0": keras.applications.EfficientNetB0,
                "efficientnet_b1": keras.applications.EfficientNetB1,
                "efficientnet_b2": keras.applications.EfficientNetB2,
                "efficientnet_b3": keras.applications.EfficientNetB3}
    scaled = layers.Rescaling(255.0, name="to_0_255")(x)
    grey = scaled[..., :1]
    # added channels (BACKGROUND_CHANNEL, FREQUENCY_CHANNEL) take the last colour channels' places
    added = [scaled[..., c:c + 1] for c in range(1, x.shape[-1])]
    rgb = layers.Concatenate(name="grey_to_rgb")([grey] * (3 - len(added)) + added)
    net = builders[variant](include_top=False, weights=None, input_shape=tuple(rgb.shape[1:]))
    return net(rgb)


def _with_extra(x, extra):
    """Features computed from the input beside the body (the cepstrum) join the pooled ones."""
    return x if extra is None else layers.Concatenate(name="with_extra_features")([x, extra])


def _scores(x, n_classes: int, options: ModelOptions, l2):
    return layers.Dense(n_classes, activation="sigmoid" if options.multi_label else "softmax",
                        kernel_regularizer=l2, name="scores")(x)


def pool_head(x, n_classes: int, options: ModelOptions, l2, extra=None):
    if options.dropout_type == "random":
        x = _with_extra(layers.GlobalAveragePooling2D(name="pool")(x), extra)
        x = layers.Dropout(options.dropout, name="dropout")(x)
    else:  # channel or location dropout act on the feature maps, before pooling
        x = _dropout(options.dropout, options.dropout_type, "dropout")(x)
        x = _with_extra(layers.GlobalAveragePooling2D(name="pool")(x), extra)
    return _scores(x, n_classes, options, l2)


def frequency_head(x, n_classes: int, options: ModelOptions, l2, extra=None):
    """Mean and max over time per frequency band, flattened: keeps where in the band a pattern
    is (insects and frogs are told apart by pitch as much as by shape). HEAD "frequency_global"
    adds each feature's mean and max over the whole chunk, so a pattern also counts wherever in
    the band it fires, for recordings whose song lies higher or lower than in training (distance
    takes the high frequencies, recorders differ)."""
    pooled = PoolOverTime(name="pool_over_time")(x)
    if options.head == "frequency_global":
        pooled = layers.Concatenate(name="per_band_and_global")(
            [pooled, layers.GlobalAveragePooling2D(name="global_mean")(x),
             layers.GlobalMaxPooling2D(name="global_max")(x)])
    x = layers.Dropout(options.dropout, name="dropout")(_with_extra(pooled, extra))
    return _scores(x, n_classes, options, l2)


def attention_head(x, n_classes: int, options: ModelOptions, l2):
    """Sound event detection head (as in PANNs and BirdCLEF winners): average over frequency,
    per-frame class scores, and per-frame attention that pools them into clip scores."""
    frames = MeanOverFrequency(name="mean_over_frequency")(x)
    frames = layers.Dropout(options.dropout, name="dropout")(frames)
    frames = layers.Dense(frames.shape[-1], activation="relu", kernel_regularizer=l2,
                          name="frame_features")(frames)
    scores = layers.Dense(n_classes, activation="sigmoid", kernel_regularizer=l2,
                          name=FRAME_SCORES)(frames)                      # (batch, time, classes)
    attention = layers.Dense(n_classes, kernel_regularizer=l2, name="attention_logits")(frames)
    attention = layers.Softmax(axis=1, name="attention")(attention)       # over time
    clip = AttentionPool(name="attention_pool")([scores, attention])
    if options.multi_label:
        return layers.Activation("linear", name="scores")(clip)
    # single-label training uses categorical cross-entropy: rescale to a distribution
    return SumToOne(name="scores")(clip)


def build_model(name: str, input_shape: tuple[int, int, int], n_classes: int,
                options: ModelOptions | None = None, **overrides) -> keras.Model:
    """A model for (height, width, 1) spectrogram chunks with ``n_classes`` scores per chunk."""
    options = options or ModelOptions()
    if overrides:
        options = ModelOptions(**{**options.__dict__, **{k: (tuple(v) if isinstance(v, list) else v)
                                                         for k, v in overrides.items()}})
    if name not in MODELS:
        raise ValueError(f"unknown MODEL {name!r}; choose from {MODELS}")
    if options.head not in HEADS or options.dropout_type not in DROPOUT_TYPES:
        raise ValueError(f"HEAD must be one of {HEADS} and DROPOUT_TYPE one of {DROPOUT_TYPES}")
    if not options.filters or options.downsampling not in ("pool", "blur", "stride"):
        raise ValueError("FILTERS needs at least one stage; DOWNSAMPLING is pool, blur or stride")
    if len(options.stem_downsampling) != 2 or not set(options.stem_downsampling) <= {1, 2, 4}:
        raise ValueError("STEM_DOWNSAMPLING is [frequency, time], each 1, 2 or 4")
    if len(options.stem_kernel) != 2 or min(options.stem_kernel) < 1:
        raise ValueError("STEM_KERNEL is [frequency rows, time columns], each at least 1")
    if options.min_frequency_rows < 0:
        raise ValueError("MIN_FREQUENCY_ROWS is a number of rows, 0 = no limit")
    if not 0 <= options.drop_path < 1:
        raise ValueError(f"DROP_PATH is a probability in [0, 1), got {options.drop_path}")
    if options.cepstrum_features and options.head == "attention":
        raise ValueError("CEPSTRUM_FEATURES needs clip-level pooling: HEAD 'pool' or 'frequency'")
    l2 = keras.regularizers.L2(options.l2) if options.l2 > 0 else None
    inputs = keras.Input(shape=input_shape, name="spectrogram")
    if name == "pi" and options.head != "pool":
        raise ValueError("the pi model has a dense head; use HEAD = 'pool'")
    x = inputs
    if options.background_channel:
        x = BackgroundRemoved(name="background_removed")(x)
    if options.frequency_channel:
        x = FrequencyPosition(name="frequency_position")(x)
    if name == "resnet":
        x = resnet_body(x, options, l2)
    elif name == "baseline":
        x = baseline_body(x, options, l2)
    elif name == "pi":
        x = pi_body(x, options, l2)
    else:
        x = efficientnet_body(x, name)
    # the head computes in float32 even under a mixed-precision policy: scores and losses need
    # the range, and its cost is small
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # layers keep the policy they are created under
    try:
        x = layers.Activation("linear", name="head_in_float32")(x)
        extra = None
        if options.cepstrum_features:  # computed in float32 too: the FFT needs it
            extra = layers.BatchNormalization(momentum=BN_MOMENTUM, name="cepstrum_norm")(
                CepstrumPool(name="cepstrum")(inputs))
        if name == "pi":  # already flat: only the classifier is left
            outputs = _scores(_with_extra(x, extra), n_classes, options, l2)
        elif options.head == "attention":
            outputs = attention_head(x, n_classes, options, l2)
        else:
            head = pool_head if options.head == "pool" else frequency_head
            outputs = head(x, n_classes, options, l2, extra)
    finally:
        keras.config.set_dtype_policy(policy)
    return keras.Model(inputs, outputs, name=name)


def frame_score_model(model: keras.Model) -> keras.Model:
    """Per-frame class scores (batch, frames, classes) of a model with the attention head."""
    try:
        layer = model.get_layer(FRAME_SCORES)
    except ValueError:
        raise ValueError("this model has no frame scores (HEAD = 'attention' adds them)") from None
    return keras.Model(model.inputs, layer.output)
