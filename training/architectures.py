"""Keras models for each architecture a TrainingConfig names.

Every model takes pixels scaled to [0, 1] (the "zero_one" preprocessing of a ModelVersion) and
ends in a 7-way softmax in EMOTIONS order; transfer models carry their network's own input
scaling as layers, so a promoted file needs no extra preprocessing. TensorFlow is imported inside
the functions: importing this module must stay cheap for the web process.
"""

from typing import TYPE_CHECKING

from projects.models import EMOTIONS

if TYPE_CHECKING:
    import keras

    from .config import TrainingConfig

# VGG16 was trained on BGR pixels in 0..255 minus these channel means (Caffe style).
VGG16_BGR_MEANS = (103.939, 116.779, 123.68)


def build_model(config: "TrainingConfig") -> "keras.Model":
    builders = {
        "cnn_trial": _cnn_trial,
        "facelabel_cnn": _facelabel_cnn,
        "mobilenet_v2": _mobilenet_v2,
        "vgg16": _vgg16,
    }
    import keras

    inputs = keras.Input((config.input_size, config.input_size, config.channels), name="pixels")
    features = builders[config.architecture](inputs, config)
    outputs = _head(features, config)
    return keras.Model(inputs, outputs, name=config.architecture)


def _activation(config: "TrainingConfig"):
    import keras

    if config.activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=config.leaky_alpha)
    return keras.layers.Activation("relu")


def _conv(x, filters: int, config: "TrainingConfig", *, use_bias: bool = True):
    import keras

    return keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=config.initializer,
        kernel_regularizer=keras.regularizers.L2(config.l2) if config.l2 else None,
    )(x)


def _cnn_trial(x, config: "TrainingConfig"):
    """The original trials' blocks: Conv 3x3, activation, BatchNorm, MaxPool, Dropout."""
    import keras

    for filters, dropout in zip(config.conv_filters, config.conv_dropout, strict=True):
        x = _conv(x, filters, config)
        x = _activation(config)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(dropout)(x)
    return x


def _facelabel_cnn(x, config: "TrainingConfig"):
    """Two Conv-BN-activation layers per block (BN before the activation, no conv bias)."""
    import keras

    convs = config.convs_per_block or (2,) * len(config.conv_filters)
    for filters, dropout, count in zip(config.conv_filters, config.conv_dropout, convs, strict=True):
        for _ in range(count):
            x = _conv(x, filters, config, use_bias=False)
            x = keras.layers.BatchNormalization()(x)
            x = _activation(config)(x)
        x = keras.layers.MaxPooling2D()(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return x


def with_flip_averaging(model: "keras.Model") -> "keras.Model":
    """The model's mean prediction for the image and its mirror image, as one saved model.

    The mirror is a fixed permutation matrix over the width axis, so the file holds only built-in
    layers: it loads in Keras's safe mode and converts to LiteRT like any other model.
    """
    import keras
    import numpy as np

    height, width, channels = model.input_shape[1:]
    inputs = keras.Input((height, width, channels), name="pixels")
    mirror = keras.layers.Dense(width, use_bias=False, trainable=False, name="mirror")
    flipped = keras.layers.Permute((1, 3, 2))(inputs)  # width last, where Dense acts
    flipped = keras.layers.Permute((1, 3, 2))(mirror(flipped))
    mirror.set_weights([np.eye(width, dtype="float32")[::-1]])
    outputs = keras.layers.Average(name="emotions_flip_mean")([model(inputs), model(flipped)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_mean")


def with_dtype_policy(model: "keras.Model", policy: str) -> "keras.Model":
    """The same network and weights with every layer under `policy` (a saved model keeps each
    layer's policy in its config, so setting the global one does not change it); the output
    layer stays float32."""
    import keras

    def rewrite(node, layer_name=""):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and layer_name != "emotions":
                return {**node, "config": {**node["config"], "name": policy}}
            name = node.get("name", layer_name) if isinstance(node.get("name"), str) else layer_name
            return {key: rewrite(value, name) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(value, layer_name) for value in node]
        return node

    if all(layer.dtype_policy.name == policy for layer in model.layers if layer.name != "emotions"):
        return model
    rebuilt = keras.Model.from_config(rewrite(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _mobilenet_v2(x, config: "TrainingConfig"):
    import keras

    # MobileNetV2's preprocess_input maps 0..255 to [-1, 1]; our inputs are [0, 1].
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="mobilenet_v2_scaling")(x)
    base = keras.applications.MobileNetV2(
        input_shape=(config.input_size, config.input_size, 3),
        include_top=False,
        weights=config.imagenet_weights or None,
    )
    base.trainable = not config.freeze_base
    # training=False keeps a frozen base's BatchNorm statistics fixed (Keras transfer guide).
    return base(x, training=False) if config.freeze_base else base(x)


def _vgg16(x, config: "TrainingConfig"):
    import keras
    import numpy as np

    # RGB [0, 1] -> Caffe-style BGR 0..255 minus means, as one fixed per-pixel linear layer, so
    # the saved model needs no Lambda (which Keras refuses to load in safe mode).
    to_bgr = keras.layers.Dense(3, trainable=False, name="vgg16_scaling")
    x = to_bgr(x)
    to_bgr.set_weights([np.eye(3)[::-1] * 255.0, -np.array(VGG16_BGR_MEANS)])
    base = keras.applications.VGG16(
        input_shape=(config.input_size, config.input_size, 3),
        include_top=False,
        weights=config.imagenet_weights or None,
    )
    base.trainable = not config.freeze_base
    return base(x, training=False) if config.freeze_base else base(x)


def _head(x, config: "TrainingConfig"):
    import keras

    x = keras.layers.GlobalAveragePooling2D()(x) if config.pooling == "gap" else keras.layers.Flatten()(x)
    if config.dense_units:
        x = keras.layers.Dense(
            config.dense_units,
            kernel_initializer=config.initializer,
            kernel_regularizer=keras.regularizers.L2(config.l2) if config.l2 else None,
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = _activation(config)(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout)(x)
    # float32 under a mixed policy too: a softmax and its loss in bfloat16 lose the small
    # probabilities that soft targets are made of.
    return keras.layers.Dense(len(EMOTIONS), activation="softmax", name="emotions", dtype="float32")(x)
