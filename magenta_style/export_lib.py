"""SavedModel export for TF Serving, TF Hub / Colab and TFLite, and loading it back.

An export is `<export_base>/<version>/` (TF Serving only loads integer-named
version folders) holding a SavedModel with these signatures (all images float32 in
[0, 1], batch B, any H and W; one image size per call):

    serving_default         image [B, H, W, 3], style_weights [B, N]
                            -> stylized_image [B, H, W, 3]
    serving_bytes           image_bytes string [B] (PNG/JPEG/GIF/BMP/WebP, all one size),
                            style_weights [B, N] -> stylized_image_bytes string [B] (PNG)
    stylize_advanced        image, style_weights, strength [B] in [0, 1],
                            preserve_colors bool [B] -> stylized_image
    stylize_bytes_advanced  image_bytes, style_weights, strength, preserve_colors
                            -> stylized_image_bytes
    stylize_map             image, style_map [B, H, W, N] (per-pixel weights, the
                            image's size), strength -> stylized_image

N is the model's number of styles. Each row of `style_weights` is that example's
own mix (not normalised, as in Magenta); 1 in column s and 0 elsewhere is style s.
`strength` 1 is the full style, 0 the plain instance-normalised content.
`preserve_colors` keeps the content's chroma (`color.preserve_colors`).

Inputs are checked in the graph, so every loader (TF Serving's C++ loader too)
reports mistakes as InvalidArgument naming the problem and the input: a wrong
rank, an empty batch, a channel count other than 3, a style count other than N,
non-finite weights or weights beyond +-style_spec.MAX_ABS_WEIGHT (1e6), strength
outside [0, 1], batch sizes that differ, undecodable or differently sized encoded
images. Every input is declared with an unknown rank in the signatures for that
reason: a known rank or size would let graph optimisation fold the checks away
while TF Serving feeds tensors without comparing their shapes to the signature.

Besides the signatures, the loaded object has:
- `__call__`: `obj(image, style_weights)` or `obj((image, style_weights))` returns
  the stylized image tensor (the tuple form is what `hub.KerasLayer(path)` and
  Keras 3's `TFSMLayer(path, call_endpoint="__call__")` call);
- `metadata()`: a scalar string tensor holding JSON (model config, style names,
  training settings, signature descriptions); the same JSON is `assets/config.json`;
- `num_styles`: an int32 scalar variable;
- `variables`, `trainable_variables`, `regularization_losses`: the network's
  weights, for `hub.KerasLayer(path, trainable=True)` fine-tuning.

The network's own `tf.Variable`s are tracked directly (a Keras 3 variable would
otherwise save a copy of itself that the serving functions never read: the
export loads in Python but fails in TF Serving and gives NaN in TFLite). No
py_function and no XLA are used in any saved function.

`assets.extra/tf_serving_warmup_requests` holds TF Serving warmup requests
(TFRecord of PredictionLog), encoded here by hand so exporting needs no
tensorflow-serving-api; the tests parse them with the official protos.
"""
import json
import logging
import os
import re
import shutil
import tempfile

from absl import logging as absl_logging
import numpy as np
import tensorflow as tf

import magenta_style
from magenta_style import checkpoints
from magenta_style import color
from magenta_style import config as config_lib
from magenta_style import limits
from magenta_style import style_spec
from magenta_style import transformer

FORMAT_NAME = "magenta_style.saved_model"
FORMAT_VERSION = 1
METADATA_FILENAME = config_lib.CONFIG_FILENAME
WARMUP_FILENAME = "tf_serving_warmup_requests"
DEFAULT_MODEL_NAME = "magenta_style"
# Side of the square warmup image: big enough to initialise every kernel, small enough
# to keep the export light (one float record is 3 * 4 * side^2 bytes).
DEFAULT_WARMUP_SIZE = 64
# Largest warmup side: one float record is 12 * side^2 bytes (12 MB at 1024) and TF
# Serving runs it at every model load; 20000 once allocated 4.5 GiB while exporting.
MAX_WARMUP_SIZE = 1024

SIGNATURES = {
    "serving_default": (
        "image float32 [B,H,W,3] in [0,1], style_weights float32 [B,num_styles] (one mix "
        "per example) -> stylized_image float32 [B,H,W,3] in [0,1]"),
    "serving_bytes": (
        "image_bytes string [B] (PNG/JPEG, all the same size), style_weights float32 "
        "[B,num_styles] -> stylized_image_bytes string [B] (PNG)"),
    "stylize_advanced": (
        "image, style_weights, strength float32 [B] in [0,1], preserve_colors bool [B] "
        "-> stylized_image"),
    "stylize_bytes_advanced": (
        "image_bytes, style_weights, strength, preserve_colors -> stylized_image_bytes"),
    "stylize_map": (
        "image, style_map float32 [B,H,W,num_styles] (per-pixel weights, same H, W as the "
        "image), strength float32 [B] in [0,1] -> stylized_image"),
}

_VERSION_RE = re.compile(r"^[0-9]+$")


class ExportError(ValueError):
    """An export cannot be written where asked; the message says why (one line)."""


# ---------------------------------------------------------------------------------------
# In-graph input checks.


def _check(condition, message):
    """An Assert op that raises InvalidArgument with `message` when `condition` is false."""
    return tf.debugging.Assert(condition, [message])


def _batch_size(tensor):
    return tf.shape(tensor, out_type=tf.int32)[0]


def _checked_rank(tensor, rank, name, layout):
    """Checks `tensor` has `rank` axes at run time; returns it with that static rank.

    The signatures declare every input with an unknown rank: TF Serving feeds tensors
    without comparing them to the signature, and a static rank would let graph
    optimisation fold this check away, so a rank-3 image once failed inside a slice
    ("slice index 3 of dimension 0 out of bounds") and a [1, 1] preserve_colors
    broadcast the output to rank 5.

    A cond, not a control dependency: when a call's shapes are known, grappler folds
    shape ops with them and the first op that cannot take the wrong rank fails before
    any Assert runs. The wrong-rank branch asserts and yields a tiny stand-in of the
    right rank and dtype, so nothing after it fails first.
    """
    ok = tf.equal(tf.rank(tensor), rank)

    def wrong_rank():
        with tf.control_dependencies([_check(ok, f"{name} must have rank {rank}, {layout}")]):
            if tensor.dtype == tf.string:  # A decodable 1x1 PNG.
                return tf.fill([1] * rank, tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)))
            return tf.zeros([1] * rank, tensor.dtype)

    checked = tf.cond(ok, lambda: tf.identity(tensor), wrong_rank)
    checked.set_shape([None] * rank)
    return checked


def _checked_image(image):
    """Checks image float32 [B, H, W, C] has C == 3, B >= 1 and H, W >= 1; returns [B, H, W, 3]."""
    image = _checked_rank(image, 4, "image", "[B, H, W, 3]")
    shape = tf.shape(image)
    with tf.control_dependencies([
            _check(tf.equal(shape[3], 3),
                   "image must have 3 channels (RGB) in its last axis, [B, H, W, 3]"),
            _check(shape[0] > 0, "image must hold at least one image (batch size B >= 1)"),
            _check(tf.logical_and(shape[1] > 0, shape[2] > 0),
                   "image must be at least 1x1 pixels")]):
        image = tf.identity(image)
    return tf.ensure_shape(image, [None, None, None, 3])


def _checked_weights(weights, batch, num_styles, name="style_weights", rank=2):
    """Checks the rank, that the last axis is num_styles, the batch matches and every
    value is finite and at most style_spec.MAX_ABS_WEIGHT in absolute value."""
    layout = "[B, num_styles]" if rank == 2 else "[B, H, W, num_styles]"
    weights = _checked_rank(weights, rank, name, layout)
    shape = tf.shape(weights)
    with tf.control_dependencies([
            _check(tf.equal(shape[rank - 1], num_styles),
                   f"{name} must have num_styles={num_styles} entries in its last axis, "
                   f"{layout}"),
            _check(tf.equal(shape[0], batch),
                   f"{name} must have one entry per image (the same batch size B as the "
                   "image)"),
            _check(tf.reduce_all(tf.math.is_finite(weights)),
                   f"{name} must be finite (no NaN or infinity)"),
            # Beyond ~1e19 the instance-norm variances overflow float32 and the output
            # is NaN (an all-black PNG); the bound leaves thirteen orders of margin.
            _check(tf.reduce_all(tf.abs(weights) <= style_spec.MAX_ABS_WEIGHT),
                   f"{name} must be at most {style_spec.MAX_ABS_WEIGHT:g} in absolute value "
                   "(larger weights overflow float32)")]):
        weights = tf.identity(weights)
    return tf.ensure_shape(weights, [None] * (rank - 1) + [num_styles])


def _checked_strength(strength, batch):
    strength = _checked_rank(strength, 1, "strength", "one value per image, [B]")
    with tf.control_dependencies([
            _check(tf.equal(_batch_size(strength), batch),
                   "strength must have one value per image (shape [B])"),
            _check(tf.reduce_all(tf.logical_and(strength >= 0.0, strength <= 1.0)),
                   "strength must be in [0, 1] (and not NaN)")]):
        return tf.identity(strength)


def _checked_flags(flags, batch, name):
    flags = _checked_rank(flags, 1, name, "one value per image, [B]")
    with tf.control_dependencies([
            _check(tf.equal(_batch_size(flags), batch),
                   f"{name} must have one value per image (shape [B])")]):
        return tf.identity(flags)


def _checked_pixel_count(image, max_pixels):
    """Refuses (InvalidArgument) a float request above `max_pixels` (batch x H x W).

    Before the network runs: an untiled request holds all its activations at once
    (see limits.py), and a request above the cap would exhaust the server's memory.
    """
    if not max_pixels:
        return image
    shape = tf.shape(image, out_type=tf.int64)
    pixels = shape[0] * shape[1] * shape[2]
    message = tf.strings.format(
        "image: a request of {} image(s) of {}x{} (width x height) = {} pixels exceeds "
        "the cap of this model, {} pixels per request (set by the memory budget of the "
        "export); send smaller images or fewer per request",
        (shape[0], shape[2], shape[1], pixels, max_pixels))
    with tf.control_dependencies([tf.debugging.Assert(pixels <= max_pixels, [message])]):
        return tf.identity(image)


def _checked_encoded_pixel_count(image_bytes, max_pixels):
    """Refuses (InvalidArgument) encoded images whose headers claim more than `max_pixels`
    in all, before anything is decoded (a 69-byte PNG may claim 20000 x 20000)."""
    if not max_pixels:
        return image_bytes
    # The rank first: the header loop below needs one encoded image per example.
    image_bytes = _checked_rank(image_bytes, 1, "image_bytes", "one encoded image per "
                                "example, [B]")
    sizes = tf.map_fn(limits.encoded_image_size, image_bytes,
                      fn_output_signature=tf.TensorSpec([2], tf.int64))
    known = tf.reduce_all(sizes >= 0, axis=1)
    each = tf.where(known, tf.minimum(sizes[:, 0] * sizes[:, 1], 2**50), 0)
    pixels = tf.reduce_sum(each)
    largest = tf.argmax(each)
    message = tf.strings.format(
        "image_bytes: image {} is {}x{} (width x height) by its header, and the {} "
        "image(s) of the request hold {} pixels, above the cap of this model, {} pixels "
        "per request (set by the memory budget of the export); nothing was decoded; send "
        "smaller images or fewer per request",
        (largest, sizes[largest][1], sizes[largest][0], tf.size(image_bytes), pixels,
         max_pixels))
    with tf.control_dependencies([tf.debugging.Assert(pixels <= max_pixels, [message])]):
        return tf.identity(image_bytes)


# ---------------------------------------------------------------------------------------
# Encoded images in the graph.


def _is_webp(data):
    """True for a RIFF....WEBP header (the first 12 bytes; shorter data is no WebP).

    Byte comparisons, not a regex: RE2's `.` does not match bytes that are not UTF-8,
    and the four size bytes in between are arbitrary. The padding keeps substr's
    position inside shorter strings.
    """
    head = tf.strings.substr(data, 0, 12) + "\0" * 12
    return tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), "RIFF"),
                          tf.equal(tf.strings.substr(head, 8, 4), "WEBP"))


def _decode_one(data):
    """string [] -> float32 [H, W, 3] in [0, 1]: one PNG/JPEG/GIF/BMP/WebP image.

    TF's WebP decoder takes no float dtype and no channel conversion ("WebP only
    supports uint8", and channels=3 fails on RGBA files), so WebP is decoded as 8-bit
    at its own channel count (RGB or RGBA) and its alpha dropped here.
    """
    def webp():
        pixels = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.image.convert_image_dtype(pixels[:, :, :3], tf.float32)

    def other():
        return tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)

    return tf.ensure_shape(tf.cond(_is_webp(data), webp, other), [None, None, 3])


def decode_images(image_bytes):
    """Decodes a batch of encoded images of one size (graph ops only).

    Args:
      image_bytes: string [B], B >= 1, PNG/JPEG/GIF/BMP/WebP file contents.

    Returns:
      float32 [B, H, W, 3] in [0, 1]; grayscale becomes RGB, alpha is dropped, 16-bit
      PNGs keep their precision.
    """
    image_bytes = _checked_rank(image_bytes, 1, "image_bytes", "one encoded image per "
                                "example, [B]")
    with tf.control_dependencies([
            _check(tf.size(image_bytes) > 0, "image_bytes must hold at least one image")]):
        image_bytes = tf.identity(image_bytes)

    decode = _decode_one
    first_shape = tf.shape(decode(image_bytes[0]))

    def decode_same_size(data):
        image = decode(data)
        with tf.control_dependencies([
                _check(tf.reduce_all(tf.equal(tf.shape(image), first_shape)),
                       "all images in one request must have the same size; send "
                       "differently sized images in separate requests")]):
            return tf.identity(image)

    return tf.map_fn(decode_same_size, image_bytes,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))


def encode_png(images):
    """float32 [B, H, W, 3] in [0, 1] -> string [B] of 8-bit PNGs (clipped, rounded)."""
    pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))


# ---------------------------------------------------------------------------------------
# The exported object.


class StylizerModule(tf.__internal__.tracking.AutoTrackable):
    """What gets saved: the serving functions plus tracked weights and metadata.

    An AutoTrackable rather than a tf.Module, because `variables` and
    `trainable_variables` must be assignable (TF Hub fine-tuning reads them).

    Args:
      model: a built transformer.StyleTransferNetwork (float32 weights).
      model_config: config.ModelConfig of `model`.
      metadata_json: str, the JSON returned by `metadata()`.
      metadata_path: optional str, a file holding `metadata_json`, saved as an asset.
      max_pixels: the most pixels (batch x height x width) one request may hold, checked
        in the graph (headers first for encoded images); None: `limits.max_pixels` at
        the default memory budget; 0: no cap (memory measurements only).
    """

    def __init__(self, model, model_config, metadata_json, metadata_path=None,
                 max_pixels=None):
        super().__init__()
        num_styles = model_config.num_styles
        if max_pixels is None:
            max_pixels = limits.max_pixels(model_config)
        # The underlying tf.Variables, not Keras' wrappers: these are what the traced
        # functions capture, so these are what must be saved and restored.
        self.variables = [v.value for v in model.variables]
        self.trainable_variables = [v.value for v in model.trainable_variables]
        self.regularization_losses = []
        self.num_styles = tf.Variable(num_styles, trainable=False, dtype=tf.int32,
                                      name="num_styles")
        if metadata_path is not None:
            self.metadata_file = tf.saved_model.Asset(metadata_path)

        def run(image, style, strength=None, preserve_colors=None):
            image = _checked_pixel_count(image, max_pixels)
            stylized = model(image, style, strength, training=False)
            if preserve_colors is not None:
                recoloured = color.preserve_colors(image, stylized)
                stylized = tf.where(preserve_colors[:, None, None, None], recoloured, stylized)
            return stylized

        def checked_weights(image, style_weights):
            image = _checked_image(image)
            return image, _checked_weights(style_weights, _batch_size(image), num_styles)

        def advanced_inputs(image, style_weights, strength, preserve_colors):
            image, style_weights = checked_weights(image, style_weights)
            batch = _batch_size(image)
            return (image, style_weights, _checked_strength(strength, batch),
                    _checked_flags(preserve_colors, batch, "preserve_colors"))

        # Unknown ranks, checked in the graph (see _checked_rank).
        image_spec = tf.TensorSpec(None, tf.float32, name="image")
        bytes_spec = tf.TensorSpec(None, tf.string, name="image_bytes")
        weights_spec = tf.TensorSpec(None, tf.float32, name="style_weights")
        strength_spec = tf.TensorSpec(None, tf.float32, name="strength")
        preserve_spec = tf.TensorSpec(None, tf.bool, name="preserve_colors")
        map_spec = tf.TensorSpec(None, tf.float32, name="style_map")

        @tf.function(input_signature=[image_spec, weights_spec])
        def stylize(image, style_weights):
            return {"stylized_image": run(*checked_weights(image, style_weights))}

        @tf.function(input_signature=[bytes_spec, weights_spec])
        def stylize_bytes(image_bytes, style_weights):
            image_bytes = _checked_encoded_pixel_count(image_bytes, max_pixels)
            image, style_weights = checked_weights(decode_images(image_bytes), style_weights)
            return {"stylized_image_bytes": encode_png(run(image, style_weights))}

        @tf.function(input_signature=[image_spec, weights_spec, strength_spec, preserve_spec])
        def stylize_advanced(image, style_weights, strength, preserve_colors):
            return {"stylized_image": run(*advanced_inputs(image, style_weights, strength,
                                                           preserve_colors))}

        @tf.function(input_signature=[bytes_spec, weights_spec, strength_spec, preserve_spec])
        def stylize_bytes_advanced(image_bytes, style_weights, strength, preserve_colors):
            image_bytes = _checked_encoded_pixel_count(image_bytes, max_pixels)
            inputs = advanced_inputs(decode_images(image_bytes), style_weights, strength,
                                     preserve_colors)
            return {"stylized_image_bytes": encode_png(run(*inputs))}

        @tf.function(input_signature=[image_spec, map_spec, strength_spec])
        def stylize_map(image, style_map, strength):
            image = _checked_image(image)
            batch = _batch_size(image)
            style_map = _checked_weights(style_map, batch, num_styles, name="style_map",
                                         rank=4)
            with tf.control_dependencies([_check(
                    tf.reduce_all(tf.equal(tf.shape(style_map)[1:3], tf.shape(image)[1:3])),
                    "style_map must have the same height and width as the image, [B, H, W, "
                    "num_styles]")]):
                style_map = tf.identity(style_map)
            return {"stylized_image": run(image, style_map, _checked_strength(strength, batch))}

        @tf.function
        def call(inputs, style_weights=None):
            if style_weights is None:
                inputs, style_weights = inputs
            return run(*checked_weights(inputs, style_weights))

        # Two traces: Hub-style `obj(image, weights)` and Keras-layer-style `obj((image,
        # weights))`; the restored function dispatches on the call's structure.
        call.get_concrete_function((image_spec, weights_spec))
        call.get_concrete_function(image_spec, weights_spec)

        @tf.function(input_signature=[])
        def metadata():
            return tf.constant(metadata_json)

        self.stylize = stylize
        self.stylize_bytes = stylize_bytes
        self.stylize_advanced = stylize_advanced
        self.stylize_bytes_advanced = stylize_bytes_advanced
        self.stylize_map = stylize_map
        self.__call__ = call
        self.metadata = metadata

    def serving_signatures(self):
        """Signature name -> tf.function, for tf.saved_model.save."""
        return {
            "serving_default": self.stylize,
            "serving_bytes": self.stylize_bytes,
            "stylize_advanced": self.stylize_advanced,
            "stylize_bytes_advanced": self.stylize_bytes_advanced,
            "stylize_map": self.stylize_map,
        }


# ---------------------------------------------------------------------------------------
# TF Serving warmup records, encoded without tensorflow-serving-api.


def _varint(value):
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field_number, payload):
    """One protobuf field of wire type 2 (bytes, string or sub-message)."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def predict_request_bytes(inputs, signature_name, model_name=DEFAULT_MODEL_NAME):
    """Serialises a tensorflow.serving.PredictRequest.

    Field numbers are those of tensorflow_serving/apis/predict.proto and model.proto:
    PredictRequest.model_spec = 1, .inputs = 2 (map<string, TensorProto>: entry key = 1,
    value = 2); ModelSpec.name = 1, .signature_name = 3.

    Args:
      inputs: dict str -> numpy array (object arrays of bytes for strings).
      signature_name: str.
      model_name: str.

    Returns:
      bytes.
    """
    spec = (_length_delimited(1, model_name.encode()) +
            _length_delimited(3, signature_name.encode()))
    message = _length_delimited(1, spec)
    for key in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[key]).SerializeToString()
        entry = _length_delimited(1, key.encode()) + _length_delimited(2, tensor)
        message += _length_delimited(2, entry)
    return message


def prediction_log_bytes(request_bytes):
    """Wraps serialised PredictRequest bytes in PredictionLog{predict_log (6){request (1)}}."""
    return _length_delimited(6, _length_delimited(1, request_bytes))


def warmup_inputs(num_styles, size=DEFAULT_WARMUP_SIZE):
    """Representative requests: {signature_name: inputs} for the two main signatures.

    The image is a smooth colour ramp of size x size; the weights select style 0.
    """
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :],
                                         0.5 * np.ones((size, size), np.float32)), axis=-1)
    weights = np.zeros([1, num_styles], np.float32)
    weights[0, 0] = 1.0
    png = tf.io.encode_png(tf.cast(tf.round(image * 255.0), tf.uint8)).numpy()
    return {
        "serving_default": {"image": image[None], "style_weights": weights},
        "serving_bytes": {"image_bytes": np.array([png], dtype=object),
                          "style_weights": weights},
    }


def write_warmup_requests(path, num_styles, size=DEFAULT_WARMUP_SIZE,
                          model_name=DEFAULT_MODEL_NAME):
    """Writes TF Serving warmup requests (TFRecord of PredictionLog) to `path`."""
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in warmup_inputs(num_styles, size).items():
            request = predict_request_bytes(inputs, signature_name, model_name)
            writer.write(prediction_log_bytes(request))


# ---------------------------------------------------------------------------------------
# Writing an export.


def existing_versions(export_base):
    """Sorted integer version numbers of the sub-directories of `export_base`."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base)
                  if _VERSION_RE.match(name) and os.path.isdir(os.path.join(export_base, name)))


def build_metadata(model_config, extra=None):
    """The metadata dict saved with an export.

    Args:
      model_config: config.ModelConfig.
      extra: optional dict of further sections (e.g. "train" from a training dir's
        config.json); it cannot replace the keys written here.

    Returns:
      dict with "model" (ModelConfig.to_dict()), "format", "format_version",
      "magenta_style_version", "tensorflow_version", "signatures" and `extra`.
    """
    payload = dict(extra or {})
    payload.update({
        "model": model_config.to_dict(),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "magenta_style_version": magenta_style.__version__,
        "tensorflow_version": tf.__version__,
        "signatures": SIGNATURES,
    })
    return payload


class _DropLogRecords(logging.Filter):
    """A logging filter that drops records whose format string contains `fragment`."""

    def __init__(self, fragment):
        super().__init__()
        self.fragment = fragment

    def filter(self, record):
        return self.fragment not in str(record.msg)


def _model_identity(model_dict):
    """What must agree between versions of one export base: the model dict without names."""
    return {k: v for k, v in model_dict.items() if k != "style_names"}


def check_same_model(export_base, model_config):
    """Refuses to add `model_config` to a base whose versions hold a different model.

    TF Serving serves the largest version, so a version with another num_styles,
    alpha (or any other model setting) silently changes what every client gets and
    breaks their style_weights. Style names may differ (a retrained model).

    Raises:
      ExportError: an existing version differs or its metadata cannot be read; the
        message names the version and the difference.
    """
    wanted = _model_identity(model_config.to_dict())
    for version in existing_versions(export_base):
        version_dir = os.path.join(export_base, str(version))
        if not tf.saved_model.contains_saved_model(version_dir):
            continue
        try:
            found = _model_identity(dict(read_metadata(version_dir)["model"]))
        except (checkpoints.CheckpointError, KeyError, TypeError, ValueError) as e:
            raise ExportError(f"cannot compare with {version_dir}: {e}; pass "
                              "--allow_different_model to add a version anyway") from None
        if found != wanted:
            diff = ", ".join(f"{k} {found.get(k)!r} there, {wanted.get(k)!r} here"
                             for k in sorted(set(found) | set(wanted))
                             if found.get(k) != wanted.get(k))
            raise ExportError(
                f"{version_dir} holds a different model ({diff}); TF Serving would serve the "
                "new version to clients of the old one. Use another --export_dir, or pass "
                "--allow_different_model")


def export_saved_model(model, model_config, export_base, version=None, extra_metadata=None,
                       warmup_size=DEFAULT_WARMUP_SIZE, model_name=DEFAULT_MODEL_NAME,
                       memory_budget_bytes=limits.DEFAULT_MEMORY_BUDGET_BYTES,
                       allow_different_model=False):
    """Exports `model` to `<export_base>/<version>/`, atomically.

    The SavedModel is written to a hidden temporary directory inside `export_base`
    (TF Serving skips names that are not integers) and renamed into place when
    complete, so a crash leaves no half-written version.

    Args:
      model: a built transformer.StyleTransferNetwork with float32 weights.
      model_config: config.ModelConfig of `model`.
      export_base: str, the model's base directory (created when missing).
      version: optional int >= 1; default: one more than the largest existing version
        (1 for an empty base).
      extra_metadata: optional dict of further metadata sections (e.g. {"train": ...}).
      warmup_size: int side of the warmup image, 0..MAX_WARMUP_SIZE (0/None: no
        warmup file).
      model_name: str, the model name put in the warmup requests.
      memory_budget_bytes: the memory one request may take; with the model's measured
        bytes per pixel it sets the pixel cap of every signature (`limits.max_pixels`),
        recorded in the metadata's "limits" section.
      allow_different_model: bool; False refuses a base whose versions hold another
        model (see `check_same_model`).

    Returns:
      str, the version directory written.

    Raises:
      ExportError: the version already exists, is not a positive integer,
        export_base is not a directory, warmup_size is out of range, or the base
        holds a different model.
    """
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"--export_dir={export_base} exists and is not a directory")
    if warmup_size and not 0 < warmup_size <= MAX_WARMUP_SIZE:
        raise ExportError(f"--warmup_size={warmup_size} must be in [0, {MAX_WARMUP_SIZE}]")
    if not allow_different_model:
        check_same_model(export_base, model_config)
    if version is None:
        version = max(existing_versions(export_base), default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    final_dir = os.path.join(export_base, str(version))
    if os.path.exists(final_dir):
        raise ExportError(f"{final_dir} already exists; choose another --version (exports are "
                          "never overwritten)")
    os.makedirs(export_base, exist_ok=True)
    staging = tempfile.mkdtemp(dir=export_base, prefix=f".tmp-export-{version}-")
    try:
        # What the convolutions compute in (transformer.with_compute_dtype), for clients.
        metadata = build_metadata(model_config, {**(extra_metadata or {}),
                                                 "compute_dtype": model.compute_dtype})
        metadata["limits"] = limits.describe(model_config, memory_budget_bytes)
        if warmup_size and warmup_size**2 > metadata["limits"]["max_pixels_per_request"]:
            raise ExportError(
                f"the warmup image ({warmup_size}x{warmup_size}) is above the pixel cap of "
                f"{metadata['limits']['max_pixels_per_request']} that the memory budget "
                f"of {memory_budget_bytes / 2**30:g} GiB allows; raise the budget or lower "
                "--warmup_size")
        metadata_json = json.dumps(metadata, indent=2, sort_keys=True)
        source_dir = os.path.join(staging, "source")
        os.makedirs(source_dir)
        metadata_path = os.path.join(source_dir, METADATA_FILENAME)
        with open(metadata_path, "w") as f:
            f.write(metadata_json + "\n")
        saved_dir = os.path.join(staging, "saved_model")
        module = StylizerModule(model, model_config, metadata_json, metadata_path,
                                max_pixels=metadata["limits"]["max_pixels_per_request"])
        # TF logs one "input name(s) resource with unsupported characters which will be
        # renamed" line per signature: those are the captured weights' internal handles,
        # not the signature inputs (image, style_weights, ...), whose names are valid.
        rename_notice = _DropLogRecords("which will be renamed to")
        absl_logging.get_absl_logger().addFilter(rename_notice)
        try:
            tf.saved_model.save(module, saved_dir, signatures=module.serving_signatures())
        finally:
            absl_logging.get_absl_logger().removeFilter(rename_notice)
        extra_dir = os.path.join(saved_dir, "assets.extra")
        os.makedirs(extra_dir, exist_ok=True)
        shutil.copy(metadata_path, os.path.join(extra_dir, METADATA_FILENAME))
        if warmup_size:
            write_warmup_requests(os.path.join(extra_dir, WARMUP_FILENAME),
                                  model_config.num_styles, warmup_size, model_name)
        if os.path.exists(final_dir):
            raise ExportError(f"{final_dir} appeared while exporting; not overwriting it")
        os.rename(saved_dir, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def export_checkpoint(checkpoint, export_base, version=None, warmup_size=DEFAULT_WARMUP_SIZE,
                      model_name=DEFAULT_MODEL_NAME,
                      memory_budget_bytes=limits.DEFAULT_MEMORY_BUDGET_BYTES,
                      allow_different_model=False, compute_dtype="float32"):
    """Loads a checkpoint (see checkpoints.load_model) and exports it.

    The config.json beside a native checkpoint (a training directory) is carried
    over whole, so its training settings are in the export's metadata.

    Args:
      checkpoint: str, a training directory, native checkpoint prefix or Magenta TF1
        checkpoint prefix.
      export_base, version, warmup_size, model_name, memory_budget_bytes,
      allow_different_model: as in
        `export_saved_model`.
      compute_dtype: "float32" or "bfloat16" (convolutions in bfloat16; weights, norms,
        inputs and outputs stay float32; see transformer.with_compute_dtype). Recorded
        in the metadata as "compute_dtype".

    Returns:
      (version_dir, config.ModelConfig).

    Raises:
      checkpoints.CheckpointError: the checkpoint cannot be loaded.
      ExportError: see `export_saved_model`.
    """
    model, model_config = checkpoints.load_model(checkpoint)
    _, directory = checkpoints.resolve_checkpoint(checkpoint)
    saved = config_lib.read_config_json(directory) if directory else None
    extra = {k: v for k, v in (saved or {}).items() if k != "model"}
    try:
        model = transformer.with_compute_dtype(model, compute_dtype)
    except ValueError as e:
        raise ExportError(str(e)) from None
    version_dir = export_saved_model(model, model_config, export_base, version=version,
                                     extra_metadata=extra, warmup_size=warmup_size,
                                     model_name=model_name,
                                     memory_budget_bytes=memory_budget_bytes,
                                     allow_different_model=allow_different_model)
    return version_dir, model_config


# ---------------------------------------------------------------------------------------
# Reading an export.


def resolve_saved_model(path):
    """The SavedModel directory for `path`: itself, or its largest integer version.

    Raises:
      checkpoints.CheckpointError: no SavedModel there.
    """
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        return path
    versions = [v for v in existing_versions(path)
                if tf.saved_model.contains_saved_model(os.path.join(path, str(v)))]
    if versions:
        return os.path.join(path, str(versions[-1]))
    raise checkpoints.CheckpointError(
        f"{path!r} is not a SavedModel directory nor an export base with integer versions")


def is_saved_model(path):
    """True when `path` is a SavedModel directory or an export base holding one."""
    try:
        resolve_saved_model(path)
    except checkpoints.CheckpointError:
        return False
    return True


def read_metadata(path):
    """The metadata dict of an export (from its assets, without loading TensorFlow graphs).

    Args:
      path: a version directory or an export base (latest version).

    Raises:
      checkpoints.CheckpointError: not an export of this package.
    """
    saved_dir = resolve_saved_model(path)
    for sub in ("assets", "assets.extra"):
        candidate = os.path.join(saved_dir, sub, METADATA_FILENAME)
        if os.path.exists(candidate):
            try:
                with open(candidate) as f:
                    metadata = json.load(f)
            except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError.
                raise checkpoints.CheckpointError(
                    f"{candidate}: unreadable export metadata: {e}") from None
            if not isinstance(metadata, dict):
                raise checkpoints.CheckpointError(f"{candidate}: export metadata is not a JSON "
                                                  "object")
            return metadata
    raise checkpoints.CheckpointError(
        f"{saved_dir!r} is a SavedModel without magenta_style metadata ({METADATA_FILENAME})")


def load_saved_model(saved_dir):
    """tf.saved_model.load, with a damaged export as one CheckpointError naming it.

    A garbage saved_model.pb raises OSError (protobuf's parse error), a truncated
    variables data file IndexError or DataLossError, depending on where it is cut.

    Raises:
      checkpoints.CheckpointError: the SavedModel cannot be loaded.
    """
    try:
        return tf.saved_model.load(saved_dir)
    except (OSError, ValueError, IndexError, tf.errors.OpError) as e:
        text = (getattr(e, "message", None) or str(e)).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        raise checkpoints.CheckpointError(
            f"{saved_dir!r}: cannot load the SavedModel (truncated or corrupt?): "
            f"{reason[:300]}") from None


def load_any(path, num_styles=None, alpha=None):
    """Loads a model for inference from a checkpoint or an export, whatever `path` holds.

    The one place that decides how a model path is read (stylize, stylize_video).

    Args:
      path: str; a Magenta TF1 checkpoint prefix, a native checkpoint prefix, a
        directory holding one (with config.json for native checkpoints), a SavedModel
        written by `magenta_style.export`, or an export base directory with integer
        version sub-directories (the highest version is used).
      num_styles, alpha: optional; must agree with the model when given.

    Returns:
      (model, config.ModelConfig): `model(images, style, strength=None)` maps float32
      [B, H, W, 3] in [0, 1], style ids [B], weights float32 [B, num_styles] or
      per-pixel maps [B, H, W, num_styles], and optional strength float32 [B] in
      [0, 1] to float32 [B, H, W, 3] in [0, 1]. For checkpoints it is a
      transformer.StyleTransferNetwork (which can also be tiled); for an export a
      plain function (see `load_stylizer`).

    Raises:
      checkpoints.CheckpointError: the path cannot be read as a model, or
        num_styles/alpha disagree with it.
    """
    if is_saved_model(path):
        return load_stylizer(path, num_styles=num_styles, alpha=alpha)
    return checkpoints.load_model(path, num_styles=num_styles, alpha=alpha)


def load_stylizer(path, num_styles=None, alpha=None):
    """Loads an export as a plain callable.

    Args:
      path: a version directory or an export base (its largest version is used).
      num_styles, alpha: optional; when given they must agree with the export.

    Returns:
      (stylize, config.ModelConfig) where `stylize(images, style, strength=None)`
      takes images float32 [B, H, W, 3] in [0, 1] and style as int ids [B], float32
      weights [B, num_styles] or per-pixel maps [B, H, W, num_styles], strength
      float32 [B] in [0, 1] or None (full style), and returns float32 [B, H, W, 3]
      in [0, 1]. It works eagerly and inside tf.function.

    Raises:
      checkpoints.CheckpointError: not an export of this package, or num_styles /
        alpha disagree with it.
    """
    saved_dir = resolve_saved_model(path)
    metadata = read_metadata(saved_dir)
    try:
        model_config = config_lib.ModelConfig.from_dict(metadata["model"])
    except (KeyError, TypeError, config_lib.ConfigError) as e:
        raise checkpoints.CheckpointError(
            f"{saved_dir!r}: unreadable model metadata: {e}") from None
    checkpoints.check_agrees(model_config, num_styles, alpha, saved_dir)
    loaded = load_saved_model(saved_dir)
    n = model_config.num_styles

    def stylize(images, style, strength=None):
        images = tf.convert_to_tensor(images, tf.float32)
        style = tf.convert_to_tensor(style)
        if style.dtype.is_integer:
            style = tf.one_hot(style, n, dtype=tf.float32)
        style = tf.cast(style, tf.float32)
        batch = tf.shape(images)[0]
        if strength is None and style.shape.rank != 4:
            return loaded.stylize(images, style)["stylized_image"]
        strength = (tf.ones([batch], tf.float32) if strength is None
                    else tf.convert_to_tensor(strength, tf.float32))
        if style.shape.rank == 4:
            return loaded.stylize_map(images, style, strength)["stylized_image"]
        return loaded.stylize_advanced(images, style, strength,
                                       tf.zeros([batch], tf.bool))["stylized_image"]

    stylize.saved_model = loaded  # Keeps the restored object alive with the callable.
    # The export's pixel cap per request (None for exports made before it existed).
    stylize.max_pixels = (metadata.get("limits") or {}).get("max_pixels_per_request")
    return stylize, model_config
