"""The exported object and its serving signatures (what `export_lib` saves).

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
"""
import functools

import tensorflow as tf

from magenta_style.inference import style_spec
from magenta_style.inference import stylizer
from magenta_style.media import limits

# Every signature, in one place: name -> (the StylizerModule method that serves it,
# what it takes and returns). The descriptions go into the export's metadata.
_SIGNATURE_TABLE = {
    "serving_default": ("stylize", (
        "image float32 [B,H,W,3] in [0,1], style_weights float32 [B,num_styles] (one mix "
        "per example) -> stylized_image float32 [B,H,W,3] in [0,1]")),
    "serving_bytes": ("stylize_bytes", (
        "image_bytes string [B] (PNG/JPEG/GIF/BMP/WebP, all the same size), style_weights "
        "float32 [B,num_styles] -> stylized_image_bytes string [B] (PNG)")),
    "stylize_advanced": ("stylize_advanced", (
        "image, style_weights, strength float32 [B] in [0,1], preserve_colors bool [B] "
        "-> stylized_image")),
    "stylize_bytes_advanced": ("stylize_bytes_advanced", (
        "image_bytes, style_weights, strength, preserve_colors -> stylized_image_bytes")),
    "stylize_map": ("stylize_map", (
        "image, style_map float32 [B,H,W,num_styles] (per-pixel weights, same H, W as the "
        "image), strength float32 [B] in [0,1] -> stylized_image")),
}
# Signature name -> description (the export's metadata).
SIGNATURES = {name: description for name, (_, description) in _SIGNATURE_TABLE.items()}
# Signature name -> the StylizerModule method (tf.function) that serves it.
SIGNATURE_METHODS = {name: method for name, (method, _) in _SIGNATURE_TABLE.items()}


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
                   "image must be at least 1x1 pixels"),
            # NaN pixels would come back as a NaN (black) image with an OK status.
            _check(tf.reduce_all(tf.math.is_finite(image)),
                   "image must hold finite values (no NaN or infinity), in [0, 1]")]):
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


def _checked_some_bytes(image_bytes):
    """Refuses (InvalidArgument) a request with no encoded image, before anything
    indexes into it (the pixel cap's message would fail on an empty batch instead)."""
    with tf.control_dependencies([
            _check(tf.size(image_bytes) > 0, "image_bytes must hold at least one image")]):
        return tf.identity(image_bytes)


def _checked_encoded_pixel_count(image_bytes, max_pixels):
    """Refuses (InvalidArgument) encoded images whose headers claim more than `max_pixels`
    in all, before anything is decoded (a 69-byte PNG may claim 20000 x 20000)."""
    if not max_pixels:
        return image_bytes
    # The rank first: the header loop below needs one encoded image per example.
    image_bytes = _checked_rank(image_bytes, 1, "image_bytes", "one encoded image per "
                                "example, [B]")
    # Every frame of an animated GIF counts: the decoder decodes them all.
    costs = tf.map_fn(limits.encoded_image_cost, image_bytes,
                      fn_output_signature=tf.TensorSpec([3], tf.int64))
    sizes = costs[:, :2]
    each = tf.where(costs[:, 2] >= 0, tf.minimum(costs[:, 2], 2**50), 0)
    pixels = tf.reduce_sum(each)
    largest = tf.argmax(each)
    message = tf.strings.format(
        "image_bytes: image {} is {}x{} (width x height) by its header, and the {} "
        "image(s) of the request hold {} pixels, above the cap of this model, {} pixels "
        "per request (set by the memory budget of the export; every frame of an animated "
        "GIF counts); nothing was decoded; send "
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

# Nothing saved needs autograph (the control flow is tf.cond and tf.map_fn), and its
# source transformation took a third of an export's time.
graph_function = functools.partial(tf.function, autograph=False)


# The signatures' inputs, of this export and the arbitrary-style one
# (arbitrary_signatures.py): unknown ranks, checked in the graph (see _checked_rank).
IMAGE = tf.TensorSpec(None, tf.float32, name="image")
IMAGE_BYTES = tf.TensorSpec(None, tf.string, name="image_bytes")
STYLE_WEIGHTS = tf.TensorSpec(None, tf.float32, name="style_weights")
STRENGTH = tf.TensorSpec(None, tf.float32, name="strength")
PRESERVE_COLORS = tf.TensorSpec(None, tf.bool, name="preserve_colors")
STYLE_MAP = tf.TensorSpec(None, tf.float32, name="style_map")
STYLE_IMAGE = tf.TensorSpec(None, tf.float32, name="style_image")
STYLE_IMAGE_BYTES = tf.TensorSpec(None, tf.string, name="style_image_bytes")
STYLE_BOTTLENECK = tf.TensorSpec(None, tf.float32, name="style_bottleneck")
# What the traced network calls take once those are checked: a batch of RGB images.
IMAGE_BATCH = tf.TensorSpec([None, None, None, 3], tf.float32)


class _Network:
    """The Keras model and its traced calls, one per kind of style input.

    A plain object, so that the SavedModel tracks neither: the model's Keras
    variables would save copies of themselves (see the module docstring), and the
    traces are reached only through the signatures that call them.
    """

    def __init__(self, model):
        self.model = model
        self.weights = self.advanced = self.map = None

    def trace(self, serve, num_styles):
        """Traces `serve` for weights, weights with strength and preserve_colors, and
        per-pixel maps (concrete functions)."""
        image = IMAGE_BATCH
        weights = tf.TensorSpec([None, num_styles], tf.float32)
        per_image = tf.TensorSpec([None], tf.float32)
        style_map = tf.TensorSpec([None, None, None, num_styles], tf.float32)

        def trace(*specs):
            return graph_function(serve, input_signature=list(specs)).get_concrete_function()
        self.weights = trace(image, weights)
        self.advanced = trace(image, weights, per_image, tf.TensorSpec([None], tf.bool))
        self.map = trace(image, style_map, per_image)


class StylizerModule(tf.__internal__.tracking.AutoTrackable):
    """What gets saved: the serving functions plus tracked weights and metadata.

    An AutoTrackable rather than a tf.Module, because `variables` and
    `trainable_variables` must be assignable (TF Hub fine-tuning reads them).

    One serve function (`serve`: the pixel cap, then the network) is traced three
    times, once per kind of style input (weights; weights with strength and
    preserve_colors; per-pixel maps), and every signature calls one of these traces
    after checking and decoding its own inputs: a trace costs seconds (thousands of
    ops), and tracing the network in each of the seven saved functions made an export
    ~2x slower. Concrete functions, because tf.saved_model.save would retrace a
    tf.function (its cache key holds the save context). Grappler inlines the calls,
    so serving runs the same graph. The methods per input kind are `stylize`
    (float images), `stylize_bytes` (encoded images), their `_advanced` forms, and
    `stylize_map`; SIGNATURE_METHODS names the signature each serves.

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
        self._num_styles = model_config.num_styles
        self._max_pixels = (limits.max_pixels(model_config) if max_pixels is None
                            else max_pixels)
        self._metadata_json = metadata_json
        # The underlying tf.Variables, not Keras' wrappers: these are what the traced
        # functions capture, so these are what must be saved and restored.
        self.variables = [v.value for v in model.variables]
        self.trainable_variables = [v.value for v in model.trainable_variables]
        self.regularization_losses = []
        self.num_styles = tf.Variable(self._num_styles, trainable=False, dtype=tf.int32,
                                      name="num_styles")
        if metadata_path is not None:
            self.metadata_file = tf.saved_model.Asset(metadata_path)
        self._network = _Network(model)
        self._network.trace(self.serve, self._num_styles)
        # Two traces: Hub-style `obj(image, weights)` and Keras-layer-style `obj((image,
        # weights))`; the restored function dispatches on the call's structure.
        self.__call__.get_concrete_function((IMAGE, STYLE_WEIGHTS))
        self.__call__.get_concrete_function(IMAGE, STYLE_WEIGHTS)

    def serve(self, image, style, strength=None, preserve_colors=False):
        """The network call every signature makes, on checked inputs: the pixel cap, then
        the model (stylizer.call_model). Traced once per kind of style (_Network).

        image float32 [B, H, W, 3]; style weights [B, N] or maps [B, H, W, N];
        strength float32 [B] or None; preserve_colors bool [B] or False
        -> float32 [B, H, W, 3] in [0, 1].
        """
        image = _checked_pixel_count(image, self._max_pixels)
        return stylizer.call_model(self._network.model, image, style, strength,
                                    preserve_colors)

    def serving_signatures(self):
        """Signature name -> tf.function, for tf.saved_model.save."""
        return {name: getattr(self, method) for name, method in SIGNATURE_METHODS.items()}

    # --- Checked inputs, per kind ----------------------------------------------------

    def _checked_weights(self, image, style_weights):
        image = _checked_image(image)
        return image, _checked_weights(style_weights, _batch_size(image), self._num_styles)

    def _checked_advanced(self, image, style_weights, strength, preserve_colors):
        image, style_weights = self._checked_weights(image, style_weights)
        batch = _batch_size(image)
        return (image, style_weights, _checked_strength(strength, batch),
                _checked_flags(preserve_colors, batch, "preserve_colors"))

    def _decoded(self, image_bytes):
        """Encoded images under the pixel cap (headers first), decoded: [B, H, W, 3]."""
        return decode_images(_checked_encoded_pixel_count(_checked_some_bytes(image_bytes),
                                                          self._max_pixels))

    # --- The saved functions: one per signature, plus __call__ and metadata ------------

    @graph_function(input_signature=[IMAGE, STYLE_WEIGHTS])
    def stylize(self, image, style_weights):
        return {"stylized_image": self._network.weights(
            *self._checked_weights(image, style_weights))}

    @graph_function(input_signature=[IMAGE_BYTES, STYLE_WEIGHTS])
    def stylize_bytes(self, image_bytes, style_weights):
        image, style_weights = self._checked_weights(self._decoded(image_bytes), style_weights)
        return {"stylized_image_bytes": encode_png(self._network.weights(image, style_weights))}

    @graph_function(input_signature=[IMAGE, STYLE_WEIGHTS, STRENGTH, PRESERVE_COLORS])
    def stylize_advanced(self, image, style_weights, strength, preserve_colors):
        return {"stylized_image": self._network.advanced(
            *self._checked_advanced(image, style_weights, strength, preserve_colors))}

    @graph_function(input_signature=[IMAGE_BYTES, STYLE_WEIGHTS, STRENGTH,
                                     PRESERVE_COLORS])
    def stylize_bytes_advanced(self, image_bytes, style_weights, strength, preserve_colors):
        inputs = self._checked_advanced(self._decoded(image_bytes), style_weights, strength,
                                        preserve_colors)
        return {"stylized_image_bytes": encode_png(self._network.advanced(*inputs))}

    @graph_function(input_signature=[IMAGE, STYLE_MAP, STRENGTH])
    def stylize_map(self, image, style_map, strength):
        image = _checked_image(image)
        batch = _batch_size(image)
        style_map = _checked_weights(style_map, batch, self._num_styles, name="style_map",
                                     rank=4)
        with tf.control_dependencies([_check(
                tf.reduce_all(tf.equal(tf.shape(style_map)[1:3], tf.shape(image)[1:3])),
                "style_map must have the same height and width as the image, [B, H, W, "
                "num_styles]")]):
            style_map = tf.identity(style_map)
        return {"stylized_image": self._network.map(image, style_map,
                                                    _checked_strength(strength, batch))}

    @graph_function
    def __call__(self, inputs, style_weights=None):
        if style_weights is None:
            inputs, style_weights = inputs
        return self._network.weights(*self._checked_weights(inputs, style_weights))

    @graph_function(input_signature=[])
    def metadata(self):
        return tf.constant(self._metadata_json)
