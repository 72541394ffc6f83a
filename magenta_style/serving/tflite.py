"""Converting an export (see magenta_style.export) to a TensorFlow Lite model: the
library of `python -m magenta_style.export_tflite`.

`--quantize`: float32 (default) or float16 (weights stored as float16, half the
size; computed in float32 on CPU, float16 on GPU delegates that support it).
`--input_size=HxW` fixes the image size (and the batch to `--batch_size`, default 1),
which mobile GPU delegates prefer; without it, batch, height and width stay dynamic
and the interpreter resizes its tensors for each input.

`--signature`: serving_default (image, style_weights), stylize_advanced (+ strength,
preserve_colors) or stylize_map (image, style_map, strength). The encoded-bytes
signatures use ops TFLite lacks and are not offered. The TFLite model has one
signature, always named `serving_default` (the converter's name for a single
function), whose inputs and output are named as in the chosen SavedModel signature.

An export of Magenta's arbitrary-style model converts as two models, as in TensorFlow
Lite's style-transfer example: `--signature=predict_style` (style_image -> 100-d
style_bottleneck; e.g. --input_size=256x256) and `--signature=transfer` (image,
style_bottleneck -> stylized_image). `--quantize=int8` stores the weights as int8
(dynamic-range quantization: activations stay float) for either kind of export.
Run it with `ai_edge_litert.interpreter.Interpreter(...).get_signature_runner()`
(`pip install -e ".[tflite]"`; TensorFlow's own `tf.lite.Interpreter` has the same API
but warns that it is deprecated).

Input checks. The export checks its inputs with Assert ops, which the converter drops.
So the converted graph keeps them in another form: every checked input passes through
a reshape whose target size matches only when the inputs are valid (style_weights or
style_map with num_styles entries, one row per image, finite and at most
style_spec.MAX_ABS_WEIGHT in absolute value; strength one value per image in [0, 1]),
so a bad call fails in `invoke` (a RESHAPE error) instead of returning a NaN or
silently broadcast image. For a message that names the problem, call through
`checked_runner(interpreter)`, which runs the export's checks in Python first:

    runner = tflite.checked_runner(Interpreter(model_path="m.tflite"), num_styles)
    runner(image=image, style_weights=weights)   # ValueError naming the input
"""
import math
import re

import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.inference import style_spec
from magenta_style.inference import stylizer
from magenta_style.networks import checkpoints

SIGNATURES = config.TFLITE_SIGNATURES
# The two halves of an arbitrary-style export (serving/arbitrary_signatures.py).
ARBITRARY_SIGNATURES = config.TFLITE_ARBITRARY_SIGNATURES
QUANTIZE = config.TFLITE_QUANTIZE
# A fixed --input_size allocates its tensors at that size on the device; 16 Mpx
# (4096x4096) is already about 3 GB of activations at alpha 1, far beyond a phone.
MAX_INPUT_PIXELS = 4096 * 4096


class TFLiteError(ValueError):
    """A bad setting or input, or a failed conversion; one line, worded with
    export_tflite's flag names."""


def parse_size(text):
    """'384x512' -> (384, 512) (height, width); raises TFLiteError.

    At most MAX_INPUT_PIXELS pixels.
    """
    match = re.fullmatch(r"\s*([0-9]{1,9})\s*[xX]\s*([0-9]{1,9})\s*", text or "")
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise TFLiteError(f"--input_size={text!r} must be HEIGHTxWIDTH, e.g. 384x384")
    height, width = int(match.group(1)), int(match.group(2))
    if height * width > MAX_INPUT_PIXELS:
        raise TFLiteError(f"--input_size={text.strip()} is {height * width:,} pixels; at most "
                         f"{MAX_INPUT_PIXELS:,} (e.g. 4096x4096) for a fixed-size model")
    return height, width


def _guard(tensor, ok):
    """`tensor` when `ok` (a scalar bool tensor); else a reshape that cannot succeed.

    TFLite has no Assert: a reshape to one element more than the tensor holds is what
    makes a failed check stop `invoke` in the converted graph.
    """
    shape = tf.shape(tensor)
    bad_shape = tf.concat([shape[:-1], shape[-1:] + 1], 0)
    # No static shape is declared on the result: the converter would then replace the
    # computed target by a constant and drop the guard.
    return tf.reshape(tensor, tf.where(ok, shape, bad_shape))


def _guard_styles(weights, ok, num_styles):
    """_guard, then reshaped to a constant style axis of num_styles (a no-op on valid
    inputs), so that the export's shape checks fold away instead of becoming EnsureShape
    ops, which TFLite lacks."""
    guarded = _guard(weights, ok)
    return tf.reshape(guarded, tf.concat([tf.shape(guarded)[:-1], [num_styles]], 0))


def _guard_rows(tensor, ok):
    """`tensor` when `ok`; else a gather of an index past its first axis, which fails in
    `invoke`. For fixed-size per-image inputs (strength), where the converter turns a
    reshape's computed target back into the static one and so drops _guard."""
    rows = tf.shape(tensor)[0]
    offset = tf.where(ok, 0, rows)
    return tf.gather(tensor, tf.range(rows) + offset)


def _weights_ok(weights, image, num_styles, rank):
    shape = tf.shape(weights)
    return tf.reduce_all(tf.stack([
        tf.equal(tf.rank(weights), rank), tf.equal(shape[-1], num_styles),
        tf.equal(shape[0], tf.shape(image)[0]),
        tf.reduce_all(tf.math.is_finite(weights)),
        tf.reduce_all(tf.abs(weights) <= style_spec.MAX_ABS_WEIGHT)]))


def _strength_ok(strength, image):
    return tf.reduce_all(tf.stack([
        tf.equal(tf.size(strength), tf.shape(image)[0]),
        tf.reduce_all(tf.logical_and(strength >= 0.0, strength <= 1.0))]))


def _concrete_function(loaded, signature, num_styles, batch_size, input_size):
    """A concrete function of the chosen signature with the requested static shapes,
    its inputs guarded (see _guard: the export's Assert ops do not survive conversion)."""
    height, width = input_size or (None, None)
    if signature == "predict_style":
        @tf.function(input_signature=[tf.TensorSpec([batch_size, height, width, 3], tf.float32,
                                                    name="style_image")])
        def predict_style(style_image):
            return loaded.signatures["predict_style"](style_image=style_image)
        return predict_style.get_concrete_function()
    image = tf.TensorSpec([batch_size, height, width, 3], tf.float32, name="image")
    if signature == "transfer":
        @tf.function(input_signature=[image, tf.TensorSpec([batch_size, num_styles], tf.float32,
                                                           name="style_bottleneck")])
        def transfer(image, style_bottleneck):
            return loaded.signatures["transfer"](image=image, style_bottleneck=style_bottleneck)
        return transfer.get_concrete_function()
    # The style axis is left unknown: a known one lets the converter fold the guard's
    # comparison away, while the interpreter still resizes the input to any length.
    weights = tf.TensorSpec([batch_size, None], tf.float32, name="style_weights")
    strength = tf.TensorSpec([batch_size], tf.float32, name="strength")
    if signature == "serving_default":
        @tf.function(input_signature=[image, weights])
        def serving_default(image, style_weights):
            style_weights = _guard_styles(
                style_weights, _weights_ok(style_weights, image, num_styles, 2), num_styles)
            return loaded.stylize(image, style_weights)
        return serving_default.get_concrete_function()
    if signature == "stylize_advanced":
        preserve = tf.TensorSpec([batch_size], tf.bool, name="preserve_colors")

        @tf.function(input_signature=[image, weights, strength, preserve])
        def stylize_advanced(image, style_weights, strength, preserve_colors):
            style_weights = _guard_styles(
                style_weights, _weights_ok(style_weights, image, num_styles, 2), num_styles)
            strength = _guard_rows(strength, _strength_ok(strength, image))
            return loaded.stylize_advanced(image, style_weights, strength, preserve_colors)
        return stylize_advanced.get_concrete_function()
    style_map = tf.TensorSpec([batch_size, height, width, None], tf.float32,
                              name="style_map")

    @tf.function(input_signature=[image, style_map, strength])
    def stylize_map(image, style_map, strength):
        same_size = tf.reduce_all(tf.equal(tf.shape(style_map)[1:3], tf.shape(image)[1:3]))
        style_map = _guard_styles(style_map, tf.logical_and(
            same_size, _weights_ok(style_map, image, num_styles, 4)), num_styles)
        strength = _guard_rows(strength, _strength_ok(strength, image))
        return loaded.stylize_map(image, style_map, strength)
    return stylize_map.get_concrete_function()


def check_inputs(inputs, num_styles):
    """The export's input checks, in Python, for one call of a converted model.

    Args:
      inputs: {name: array} as passed to the signature runner.
      num_styles: the model's number of styles.

    Raises:
      ValueError: one line naming the input and what is wrong.
    """
    image = np.asarray(inputs.get("image"))
    if image.ndim != 4 or image.shape[-1] != 3 or image.shape[0] < 1:
        raise ValueError(f"image must be [B, H, W, 3] with B >= 1, got {list(image.shape)}")
    batch = image.shape[0]
    for name, rank in (("style_weights", 2), ("style_map", 4)):
        if name not in inputs:
            continue
        weights = np.asarray(inputs[name], np.float64)
        layout = "[B, num_styles]" if rank == 2 else "[B, H, W, num_styles]"
        if weights.ndim != rank or weights.shape[-1] != num_styles:
            raise ValueError(f"{name} must be {layout} with num_styles={num_styles}, got "
                             f"{list(weights.shape)}")
        if weights.shape[0] != batch:
            raise ValueError(f"{name} must have one entry per image (B={batch}), got "
                             f"{weights.shape[0]}")
        if rank == 4 and weights.shape[1:3] != image.shape[1:3]:
            raise ValueError(f"style_map must have the image's height and width "
                             f"{list(image.shape[1:3])}, got {list(weights.shape[1:3])}")
        if not np.all(np.isfinite(weights)):
            raise ValueError(f"{name} must be finite (no NaN or infinity)")
        if np.abs(weights).max() > style_spec.MAX_ABS_WEIGHT:
            raise ValueError(f"{name} must be at most {style_spec.MAX_ABS_WEIGHT:g} in "
                             "absolute value (larger weights overflow float32)")
    if "strength" in inputs:
        strength = np.asarray(inputs["strength"], np.float64).reshape(-1)
        if strength.size != batch:
            raise ValueError(f"strength must have one value per image (B={batch}), got "
                             f"{strength.size}")
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in strength):
            raise ValueError("strength must be in [0, 1]")


def checked_runner(interpreter, num_styles, signature="serving_default"):
    """The interpreter's signature runner, checking its inputs first (check_inputs).

    Args:
      interpreter: an ai_edge_litert (or tf.lite) Interpreter of a converted model.
      num_styles: the model's number of styles (the export's metadata "model" section).
      signature: the runner's signature key (always serving_default for this tool).

    Returns:
      callable(**inputs) -> the runner's outputs; ValueError for bad inputs.
    """
    runner = interpreter.get_signature_runner(signature)

    def run(**inputs):
        check_inputs(inputs, num_styles)
        return runner(**inputs)
    return run


def convert(saved_model, signature=config.TFLiteConfig.signature,
            quantize=config.TFLiteConfig.quantize, input_size=None, batch_size=None,
            loaded=None):
    """Converts an export to TFLite flatbuffer bytes.

    Args:
      saved_model: str, a version directory or an export base.
      signature: one of SIGNATURES + ARBITRARY_SIGNATURES.
      quantize: one of QUANTIZE (weights).
      input_size: optional (height, width) for a fixed-size model.
      batch_size: optional int; default 1 when input_size is given, else dynamic.
      loaded: optional, the export already loaded with tf.saved_model.load (saves
        loading it again).

    Returns:
      bytes, the .tflite model.

    Raises:
      TFLiteError: not an export, or the converter failed (its first line is given).
    """
    if signature not in SIGNATURES + ARBITRARY_SIGNATURES:
        raise TFLiteError(f"signature must be one of {SIGNATURES + ARBITRARY_SIGNATURES}, got "
                         f"{signature!r}")
    if quantize not in QUANTIZE:
        raise TFLiteError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    try:
        saved_dir = stylizer.resolve_saved_model(saved_model)
        metadata = stylizer.read_metadata(saved_dir)
    except checkpoints.CheckpointError as e:
        raise TFLiteError(f"--saved_model: {e}") from None
    if batch_size is None and input_size is not None:
        batch_size = 1
    if loaded is None:
        try:
            loaded = stylizer.load_saved_model(saved_dir)
        except checkpoints.CheckpointError as e:
            raise TFLiteError(f"--saved_model: {e}") from None
    arbitrary = metadata["model"].get("generator") == "arbitrary"
    allowed = ARBITRARY_SIGNATURES if arbitrary else SIGNATURES
    if signature not in allowed:
        kind = "Magenta's arbitrary-style model" if arbitrary else "an N-style model"
        raise TFLiteError(f"--signature={signature}: the export holds {kind}; choose one of "
                         f"{', '.join(allowed)}")
    # The arbitrary model's second input is the bottleneck, not N style weights.
    width = (metadata.get("arbitrary") or {}).get("bottleneck", 100) if arbitrary else (
        metadata["model"]["num_styles"])
    function = _concrete_function(loaded, signature, width, batch_size, input_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":  # Dynamic range: int8 weights, float activations.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as e:  # The converter raises several unrelated types.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if input_size else "; a fixed --input_size may convert where dynamic fails"
        raise TFLiteError(f"TFLite conversion failed: {first[:300]}{hint}") from None
