"""Keras 3 models (keras and keras.ops only, so every backend runs them)."""
from __future__ import annotations

import keras
from keras import layers

MODELS = ("resnet",)
# Faster-moving statistics than Keras' 0.99: bioacoustic training sets are often small, and with
# few steps per epoch 0.99 leaves inference-mode statistics far from the data for many epochs.
BN_MOMENTUM = 0.9


def _residual_block(x, filters: int, stride: int, name: str, l2=None):
    """Pre-activation residual block: BN-ReLU-Conv-BN-ReLU-Conv plus a (projected) shortcut."""
    shortcut = x
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, kernel_regularizer=l2,
                                 name=f"{name}_proj")(y)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, kernel_regularizer=l2,
                      name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=l2,
                      name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_resnet(input_shape: tuple[int, int, int], n_classes: int, filters: list[int],
                 blocks_per_stage: int = 1, dropout: float = 0.5, multi_label: bool = False,
                 l2: float = 0.0, name: str = "resnet") -> keras.Model:
    """A small ResNet for spectrogram chunks: strided stem, residual stages, global pooling.
    ``l2`` adds an L2 penalty on every kernel (the baseline's L2_WEIGHT)."""
    if not filters:
        raise ValueError("FILTERS needs at least one stage")
    l2 = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=input_shape, name="spectrogram")
    x = layers.Conv2D(filters[0], 5, strides=2, padding="same", use_bias=False, kernel_regularizer=l2,
                      name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for stage, width in enumerate(filters):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, width, stride, name=f"stage{stage + 1}_block{block + 1}", l2=l2)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="head_bn")(x)
    x = layers.Activation("relu", name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="sigmoid" if multi_label else "softmax",
                           kernel_regularizer=l2, name="scores")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(name: str, input_shape: tuple[int, int, int], n_classes: int, **options) -> keras.Model:
    if name == "resnet":
        return build_resnet(input_shape, n_classes, **options)
    raise ValueError(f"unknown MODEL {name!r}; choose from {MODELS}")
