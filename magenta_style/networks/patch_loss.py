"""Patch-based (MRF) style loss with semantic maps: Li and Wand 2016, Champandard 2016.

The style loss of semantic style transfer and neural doodles (Champandard, "Semantic
Style Transfer and Turning Two-Bit Doodles into Fine Artworks", on Li and Wand's MRF
loss; docs/semantic.md). At each style layer l the VGG features
`x^l` are augmented with a semantic map down-sampled to the layer,
`s^l = [x^l, gamma * m^l]` (N + M channels), and every k x k patch (stride 1, VALID)
of the output's `s^l` is matched to its nearest style patch by normalized
cross-correlation:

    NN(i) = argmax_j  <Psi_i(s), Psi_j(s_s)> / (|Psi_i(s)| |Psi_j(s_s)|)

(the seed's extracted text says "arg min"; that is an extraction error, Li and Wand
and the reference code use argmax). The style error is

    E_s = sum_l w_l sum_i || Psi_i(s^l) - Psi_NN(i)(s_s^l) ||^2

a plain sum over patches and over all N + M channels, as in the paper. NN(i) is
recomputed at every call and held constant for the gradient; the semantic channels
enter the match and the loss value but carry no gradient (the content map is a
constant of the optimisation), so only the feature differences move the pixels.
With gamma = 0 or all-zero maps this is exactly Li and Wand's loss; with no maps at
all (`style_map=None`) it is Li and Wand's loss without the extra channels.

Shapes, dtypes, ranges:
- features: dict {end point: float32 [1, h, w, C]} (one image), any end point names;
- semantic maps: float32 [1, H, W, M] with values in 0..255 (the range the paper's
  gamma = 50 assumes), at the resolution of their image. `load_semantic_map` reads
  them from files.

Down-sampling the map to a layer: repeated 2 x 2, stride-2, VALID average pooling,
as many times as the VGG pools before that layer (inferred from the shapes), which is
exactly what the network's own average pooling does to the image, so map cell and
feature cell cover the same pixels, odd sizes included (93 -> 46 in both). This is
the reference code's "average pooling of the map by 4 (sem3_1) and 8 (sem4_1)".

What gamma means (`equalizing_gamma`). The paper picks gamma = 50 "to equalize the
value range of m^l and x^l" for ImageNet VGG-19 with 0..255 maps. For other weights,
preprocessing or map ranges, the equivalent setting is
`gamma_eq(l) = max|x^l| / max|m^l|` measured on the style image: the gamma at which
the largest semantic value equals the largest feature value. A gamma of
`c * gamma_eq` means "the map counts c times as much as the features"; 50 is only
the paper's number for the paper's network. `semantic_fraction` reports the share
of the style patches' energy that sits in the semantic channels at a given gamma.

Memory. The match is the step that ran peers out of memory (a full correlation
matrix of output positions x style patches: 126^2 x 126^2 floats = 1 GB at conv3_1
for a 512 x 512 output and style, several times that for larger images). Here it is
computed in blocks: output rows in bands, style patches in chunks, with a running
max/argmax over the chunks, so one correlation block `[rows, Qw, chunk]` of at most
`match_budget_bytes` (default 128 MiB) exists at a time (the chunks are serialized by
control dependencies and the bands by a while loop with parallel_iterations=1).
What remains is linear in the image sizes: the normalized style patches
(P x k*k*(N+M) floats: 148 MB at conv3_1 and 71 MB at conv4_1 of VGG-19 for a 512 x
512 style) and the loss's gathered targets (one [Qh, Qw, C] tensor per patch offset).
"""
import math
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from magenta_style import config
from magenta_style.media import images

# gamma: the paper's absolute value (ImageNet VGG-19); the optimize command's default is
# DEFAULT_SEMANTIC_FACTOR x gamma_eq instead (default_semantic_weight). k: the
# command's default, written once in config.
DEFAULT_SEMANTIC_WEIGHT = 50.0
# The default gamma, as a multiple of equalizing_gamma (see default_semantic_weight).
DEFAULT_SEMANTIC_FACTOR = 4.0
DEFAULT_PATCH_SIZE = config.OptimizeConfig.patch_size
DEFAULT_MATCH_BUDGET_BYTES = 128 * 2 ** 20
# Style patches per chunk of the match; with the budget this bounds a block's width
# however large the style is (a 2000 x 2000 style has 250k patches at conv3_1).
DEFAULT_STYLE_CHUNK = 4096

MAP_KINDS = ("auto", "rgb", "grey", "labels")

# Label maps become one channel per label that occurs (ids are only names: 7 and 500000
# cost the same). Each channel is a float32 plane of the map and k*k values of every
# style patch at every style layer, so their number is bounded: a doodle uses a handful
# of labels, and a noisy or mistaken map (an id per pixel) would fill the memory.
MAX_LABELS = 64

# The loss's control flow is explicit (tf.while_loop, unrolled Python loops over static
# sizes); autograph would only re-trace it slowly (seconds per trace).
_NOT_AUTOGRAPH = tf.autograph.experimental.do_not_convert


class SemanticMapError(ValueError):
    """A semantic map cannot be used; the message is one line and names the file(s)."""


# ----------------------------------------------------------------------------------
# Reading maps.


def _same_aspect(map_hw, image_hw):
    """True if the map, scaled to the image's height, is within one map pixel of its width."""
    (h, w), (big_h, big_w) = map_hw, image_hw
    return abs(w * big_h - big_w * h) <= max(big_h, big_w)


def _read_map_pixels(path, kind):
    """Returns (float32 [h, w, M] values in 0..255 or int labels [h, w], is_labels)."""
    if path.lower().endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise SemanticMapError(f"semantic map {path}: no such file") from None
        except (OSError, ValueError) as e:
            raise SemanticMapError(f"semantic map {path}: cannot be read as .npy ({e})") \
                from None
        if array.size == 0:  # [0, W], [H, 0] or zero channels [H, W, 0]: nothing to map.
            raise SemanticMapError(f"semantic map {path}: empty array of shape "
                                   f"{list(array.shape)}; a map needs pixels and channels")
        if array.ndim == 2 and kind in ("auto", "labels"):
            if not np.issubdtype(array.dtype, np.integer):
                raise SemanticMapError(
                    f"semantic map {path}: a 2-D .npy map must hold integer label ids, "
                    f"got {array.dtype}")
            if array.size and array.min() < 0:
                raise SemanticMapError(f"semantic map {path}: label ids must be >= 0")
            return array.astype(np.int64), True
        if array.ndim == 3 and kind in ("auto", "rgb", "grey"):
            values = array.astype(np.float32)
            if values.size and (not np.all(np.isfinite(values)) or values.min() < 0
                                or values.max() > 255):
                raise SemanticMapError(
                    f"semantic map {path}: channel values must lie in 0..255 (multiply "
                    f"0..1 masks by 255)")
            return values, False
        raise SemanticMapError(
            f"semantic map {path}: expected an [H, W] integer label array or an "
            f"[H, W, M] array of channels, got shape {list(array.shape)}")
    try:
        rgb, _ = images.load_image(path)
    except images.ImageError as e:
        raise SemanticMapError(f"semantic map {e}") from None
    values = np.round(rgb * 255.0).astype(np.float32)
    grey = bool(np.all(values[..., :1] == values))
    if kind == "labels":
        if not grey:
            raise SemanticMapError(
                f"semantic map {path}: a label image must be grey-level (pixel value = "
                f"label id); colour maps are read with their RGB channels")
        return values[..., 0].astype(np.int64), True
    if kind == "grey" or (kind == "auto" and grey):
        return values[..., :1], False
    return values, False


def _one_hot(labels, num_labels):
    return (np.arange(num_labels) == labels[..., None]).astype(np.float32) * 255.0


def _label_ids(path, *label_maps):
    """The sorted label ids that occur in `label_maps` (int arrays), at most MAX_LABELS.

    Raises:
      SemanticMapError: more distinct labels than MAX_LABELS.
    """
    ids = np.unique(np.concatenate([np.unique(labels) for labels in label_maps]))
    if len(ids) > MAX_LABELS:
        raise SemanticMapError(
            f"semantic map {path} has {len(ids)} distinct label ids, more than the "
            f"{MAX_LABELS} a map may use (each label is a channel of every patch); "
            f"use fewer labels (ids need not be consecutive)")
    return ids


def load_semantic_map(path, image_hw=None, image_name="its image", kind="auto",
                      num_labels=None, label_ids=None):
    """Reads a semantic map as float32 [1, H, W, M] in 0..255.

    Representations (kind="auto" decides from the file):
    - an image file painted in colours: M = 3, its RGB values (the paper's maps);
    - an image file whose pixels are all grey (R = G = B): M = 1, the grey level;
    - a `.npy` [H, W] integer array of label ids (or, with kind="labels", a grey
      image whose pixel values are label ids): one-hot, one channel per label that
      occurs, in the order of the ids (M = the number of distinct ids, at most
      MAX_LABELS), 255 where the label is present;
    - a `.npy` [H, W, M] array: M channels as given, which must lie in 0..255.
    Alpha is ignored.

    Resizing: a map of another size than `image_hw` but the same aspect ratio (within
    one map pixel) is resized to it: label ids by nearest neighbour (so one-hot stays
    one-hot), all other maps bilinearly with antialiasing (an area average when
    shrinking; mixed values at borders are what the per-layer pooling makes anyway).

    Args:
      path: the map file.
      image_hw: (H, W) of the image the map annotates, or None to keep the map's size
        (doodle mode, where the map defines the output).
      image_name: how to name that image in messages.
      kind: "auto", "rgb", "grey" or "labels" (see above).
      num_labels: for label maps, channels indexed by the ids themselves: ids
        0..num_labels-1 (>= max id + 1, <= MAX_LABELS).
      label_ids: for label maps, the sorted ids that name the channels (a superset of
        the map's; load_semantic_maps passes the ids of both maps).

    Returns:
      float32 np.ndarray [1, H, W, M], values in 0..255.

    Raises:
      SemanticMapError: unreadable file, bad values, or another aspect ratio (one line
        naming the map and the image).
    """
    path = os.fspath(path)
    if kind not in MAP_KINDS:
        raise ValueError(f"kind must be one of {MAP_KINDS}, got {kind!r}")
    pixels, is_labels = _read_map_pixels(path, kind)
    map_hw = tuple(pixels.shape[:2])
    if min(map_hw) < 1:
        raise SemanticMapError(f"semantic map {path} is empty")
    if image_hw is not None:
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        if not _same_aspect(map_hw, image_hw):
            raise SemanticMapError(
                f"semantic map {path} is {map_hw[1]}x{map_hw[0]}, another aspect ratio than "
                f"{image_name} ({image_hw[1]}x{image_hw[0]}); paint it at the image's size "
                f"or a fraction of it")
    if is_labels:
        if num_labels is not None:
            count = int(pixels.max()) + 1
            if num_labels < count:
                raise SemanticMapError(
                    f"semantic map {path} has label id {count - 1}, more than the "
                    f"{num_labels} labels asked for")
            if num_labels > MAX_LABELS:
                raise SemanticMapError(f"semantic map {path}: {num_labels} labels asked "
                                       f"for, more than {MAX_LABELS}")
            label_ids = np.arange(num_labels)
        elif label_ids is None:
            label_ids = _label_ids(path, pixels)
        label_ids = np.asarray(label_ids, np.int64)
        # Ids -> channels 0..K-1 (before resizing: nearest neighbour keeps them whole,
        # and float32 holds small ranks exactly where it would round large ids).
        ranks = np.searchsorted(label_ids, pixels)
        if not np.array_equal(label_ids[np.minimum(ranks, len(label_ids) - 1)], pixels):
            raise SemanticMapError(f"semantic map {path} has label ids outside the set "
                                   "asked for")
        if image_hw is not None and map_hw != image_hw:
            ranks = tf.image.resize(ranks[..., None].astype(np.float32), image_hw,
                                    method="nearest").numpy()[..., 0].astype(np.int64)
        values = _one_hot(ranks, len(label_ids))
    else:
        values = pixels
        if image_hw is not None and map_hw != image_hw:
            values = tf.image.resize(values, image_hw, method="bilinear",
                                     antialias=True).numpy()
            values = np.clip(values, 0.0, 255.0)
    return np.ascontiguousarray(values[None], np.float32)


def check_semantic_maps(style_map, content_map, style_name="the style map",
                        content_name="the content map"):
    """Raises SemanticMapError unless both maps have the same number of channels M.

    Args:
      style_map, content_map: float [1, H, W, M] arrays or tensors (sizes may differ).
      style_name, content_name: how to name them (their paths).
    """
    style_m, content_m = int(style_map.shape[-1]), int(content_map.shape[-1])
    if style_m != content_m:
        raise SemanticMapError(
            f"semantic maps differ in channels: {style_name} has {style_m}, {content_name} "
            f"has {content_m}; paint both the same way (both RGB, both grey or the same "
            f"label set)")


def load_semantic_maps(style_path, style_hw, content_path, content_hw=None,
                       style_name="the style image", content_name="the content image",
                       kind="auto"):
    """Reads a style and a content map that must agree in channels.

    Label maps get one-hot channels for the labels of both (a doodle may use fewer
    labels than the style); a grey map next to a colour map is read as colours
    (R = G = B, the same map), so only truly different representations fail.

    Args:
      style_path, content_path: the map files.
      style_hw: (H, W) of the style image. content_hw: (H, W) of the content image,
        or None in doodle mode (the map keeps its size).
      style_name, content_name: how to name the images in messages.
      kind: as for load_semantic_map.

    Returns:
      (style_map, content_map): float32 [1, H, W, M] in 0..255 each.

    Raises:
      SemanticMapError: see load_semantic_map and check_semantic_maps.
    """
    style_pixels, style_labels = _read_map_pixels(os.fspath(style_path), kind)
    content_pixels, content_labels = _read_map_pixels(os.fspath(content_path), kind)
    label_ids = None
    if style_labels and content_labels:  # One channel per label of either map.
        label_ids = _label_ids(f"{os.fspath(style_path)} with {os.fspath(content_path)}",
                               style_pixels, content_pixels)
    style_kind = content_kind = kind
    if kind == "auto" and not (style_labels or content_labels):
        channels = {style_pixels.shape[-1], content_pixels.shape[-1]}
        if channels == {1, 3}:
            style_kind = content_kind = "rgb"
    style_map = load_semantic_map(style_path, style_hw, style_name, style_kind,
                                  label_ids=label_ids)
    content_map = load_semantic_map(content_path, content_hw, content_name, content_kind,
                                    label_ids=label_ids)
    check_semantic_maps(style_map, content_map, os.fspath(style_path),
                        os.fspath(content_path))
    return style_map, content_map


# ----------------------------------------------------------------------------------
# Maps at a layer's resolution.


def downsample_map(semantic_map, hw):
    """Average-pools a map down to a layer's resolution, as the VGG pools the image.

    Args:
      semantic_map: float [1, H, W, M].
      hw: (h, w) of the layer (ints or scalar int tensors); must be reachable from
        (H, W) by repeated 2x2 stride-2 VALID pooling (floor halving), which holds for
        every VGG end point computed from an image of size (H, W).

    Returns:
      float32 [1, h, w, M].
    """
    semantic_map = tf.convert_to_tensor(semantic_map, tf.float32)
    static = (semantic_map.shape[1], semantic_map.shape[2])
    if None not in static and all(isinstance(v, int) for v in hw):
        height, width = static
        while height > hw[0] or width > hw[1]:
            semantic_map = tf.nn.avg_pool2d(semantic_map, 2, 2, "VALID")
            height, width = height // 2, width // 2
        if (height, width) != tuple(hw):
            raise ValueError(f"a {static[1]}x{static[0]} map cannot be pooled to the layer's "
                             f"{hw[1]}x{hw[0]}; is the map at its image's size?")
        return semantic_map
    channels = semantic_map.shape[-1]
    return tf.while_loop(
        lambda m: tf.shape(m)[1] > hw[0],
        lambda m: [tf.nn.avg_pool2d(m, 2, 2, "VALID")],
        [semantic_map],
        shape_invariants=[tf.TensorShape([1, None, None, channels])])[0]


def _layer_hw(features):
    """(h, w) of [1, h, w, C] features: Python ints when static, else scalar tensors."""
    shape = features.shape
    if shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    dynamic = tf.shape(features)
    return dynamic[1], dynamic[2]


def equalizing_gamma(style_features, style_map):
    """gamma_eq(l) = max|x^l| / max|m^l| on the style image, per layer.

    The gamma at which the largest semantic value of the down-sampled map equals the
    largest feature value: the paper's "equalize the value range of m^l and x^l",
    measured for whatever VGG weights and preprocessing are in use (the paper's 50
    holds for its network only). Express semantic weights as multiples of it when the weights are not the
    paper's ImageNet VGG-19.

    Args:
      style_features: {end point: float [1, h, w, C]}.
      style_map: float [1, H, W, M] in 0..255 at the style image's size.

    Returns:
      {end point: float}; 0.0 for a layer where the map is all zero (gamma does not
      matter there).
    """
    gammas = {}
    for name, features in style_features.items():
        pooled = downsample_map(style_map, _layer_hw(features))
        map_max = float(tf.reduce_max(tf.abs(pooled)))
        feature_max = float(tf.reduce_max(tf.abs(tf.cast(features, tf.float32))))
        gammas[name] = feature_max / map_max if map_max > 0 else 0.0
    return gammas


def default_semantic_weight(style_features, style_map, factor=DEFAULT_SEMANTIC_FACTOR):
    """The default gamma per layer: `factor` x equalizing_gamma on the style.

    The paper's gamma = 50 is its "equalize the value range of m^l and x^l" for ImageNet
    VGG-19 with 0..255 maps. Under other weights the same number means something else:
    with HED's VGG-16 (`--vgg_checkpoint=hed`) gamma_eq is about 1.6 at conv3_1 and 0.4
    at conv4_1, so 50 puts 99.9 % of every style patch's energy in the map. The match
    then ranks a region's style patches by an unnormalized dot product (the feature
    part barely moves the normalized correlation), and the loss's value is mostly the
    map mismatch, which no pixel can lower: the loss fell 0.1-0.4 % over 60 iterations
    and the doodle came out as noise (issue 27). A multiple of gamma_eq means the same
    under any weights; 4 keeps regions confined (docs/semantic.md) while the features
    decide which patch of the region is matched.

    Args:
      style_features: {end point: float [1, h, w, C]}.
      style_map: float [1, H, W, M] in 0..255 at the style image's size, or None (no
        maps: gamma is unused, DEFAULT_SEMANTIC_WEIGHT is returned).
      factor: the multiple of gamma_eq.

    Returns:
      {end point: float} (or a float when style_map is None).
    """
    if style_map is None:
        return DEFAULT_SEMANTIC_WEIGHT
    return {name: factor * gamma
            for name, gamma in equalizing_gamma(style_features, style_map).items()}


# ----------------------------------------------------------------------------------
# The loss.


def _augment(features, semantic_map, gamma):
    """[x, gamma * m] along channels ([1, h, w, C + M]), or x when there is no map."""
    features = tf.cast(features, tf.float32)
    if semantic_map is None:
        return features
    pooled = downsample_map(semantic_map, _layer_hw(features))
    return tf.concat([features, gamma * pooled], axis=-1)


def _num_patches(size, k):
    return tf.maximum(size - k + 1, 0) if isinstance(size, tf.Tensor) else max(size - k + 1, 0)


class _StyleLayer:
    """One layer's precomputed style side (eager constants)."""

    def __init__(self, name, features, style_map, gamma, patch_size, style_chunk):
        features = tf.convert_to_tensor(features, tf.float32)
        if features.shape.rank != 4 or features.shape[0] != 1:
            raise ValueError(f"style features of {name} must be [1, h, w, C], got "
                             f"{features.shape}")
        _, height, width, channels = features.shape
        k = patch_size
        if height < k or width < k:
            raise ValueError(
                f"style features of {name} are {width}x{height}, smaller than a {k}x{k} "
                f"patch; use a larger style image or a shallower layer")
        self.name = name
        self.gamma = float(gamma)
        self.channels = int(channels)
        self.style_width = int(width)
        self.patch_cols = int(width - k + 1)
        self.num_patches = int((height - k + 1) * self.patch_cols)
        augmented = _augment(features, style_map, self.gamma)
        self.depth = int(augmented.shape[-1])
        # Flattened style positions: the loss gathers its targets from these.
        self.features_flat = tf.reshape(features, [-1, self.channels])
        self.semantic_flat = (None if style_map is None else
                              tf.reshape(augmented[..., self.channels:],
                                         [-1, self.depth - self.channels]))
        patches = tf.image.extract_patches(augmented, [1, k, k, 1], [1, 1, 1, 1],
                                           [1, 1, 1, 1], "VALID")
        patches = tf.reshape(patches, [self.num_patches, k * k * self.depth])
        self.norms = tf.norm(patches, axis=-1)
        energy = tf.reduce_sum(tf.square(patches), axis=-1)
        semantic_energy = tf.reduce_sum(tf.square(tf.reshape(
            patches, [self.num_patches, k * k, self.depth])[..., self.channels:]), axis=[1, 2])
        self.semantic_fraction = float(tf.reduce_mean(
            tf.math.divide_no_nan(semantic_energy, energy)))
        # A zero patch correlates 0 with everything instead of dividing by zero.
        normalized = patches / tf.maximum(self.norms, 1e-12)[:, None]
        kernels = tf.transpose(tf.reshape(normalized, [self.num_patches, k, k, self.depth]),
                               [1, 2, 3, 0])
        self.chunk_starts = list(range(0, self.num_patches, style_chunk))
        self.kernels = [kernels[..., start:start + style_chunk] for start in self.chunk_starts]


class PatchStyleLoss:
    """Semantic patch (MRF) style loss against one style image.

    Build it once per style image and scale (the style patches are precomputed), then
    call it on the output's features inside the optimisation's tf.function: it holds
    only constants and one int32 variable per layer (the last matches, for `usage`),
    so calls with same-shaped inputs never retrace, and unknown (None) spatial sizes
    work too.

    Args:
      style_features: {end point: float32 [1, h, w, C]} VGG features of the style image.
      layer_weights: {end point: float >= 0}: w_l, the layers used (each must be in
        style_features). The paper uses conv3_1 and conv4_1 of VGG-19 with equal weights.
      style_map: float32 [1, H, W, M] in 0..255 at the style image's size, or None for
        Li and Wand's loss without semantic channels.
      semantic_weight: gamma, a float or {end point: float}; default 50 (the paper's,
        for ImageNet VGG-19 and 0..255 maps; see equalizing_gamma for other weights).
      patch_size: k (3).
      match_budget_bytes: the largest correlation block of the match (see module doc).
      style_chunk: style patches per chunk of the match.

    Raises:
      ValueError: a weighted layer is missing from style_features, a bad weight, or the
        style features are smaller than a patch.
    """

    def __init__(self, style_features, layer_weights, style_map=None,
                 semantic_weight=DEFAULT_SEMANTIC_WEIGHT, patch_size=DEFAULT_PATCH_SIZE,
                 match_budget_bytes=DEFAULT_MATCH_BUDGET_BYTES,
                 style_chunk=DEFAULT_STYLE_CHUNK):
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if match_budget_bytes < 4 or style_chunk < 1:
            raise ValueError("match_budget_bytes and style_chunk must be positive")
        self.patch_size = int(patch_size)
        self.match_budget_bytes = int(match_budget_bytes)
        self.has_map = style_map is not None
        self.layer_weights = {}
        for name, weight in layer_weights.items():
            if name not in style_features:
                raise ValueError(f"style layer {name} is not among the style features "
                                 f"({', '.join(style_features)})")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of style layer {name} must be finite and >= 0, "
                                 f"got {weight!r}")
            self.layer_weights[name] = float(weight)
        if isinstance(semantic_weight, dict):
            gammas = {name: float(semantic_weight[name]) for name in self.layer_weights}
        else:
            gammas = {name: float(semantic_weight) for name in self.layer_weights}
        style_map = None if style_map is None else tf.convert_to_tensor(style_map, tf.float32)
        self.map_channels = None if style_map is None else int(style_map.shape[-1])
        self.layers = {
            name: _StyleLayer(name, style_features[name], style_map, gammas[name],
                              self.patch_size, int(style_chunk))
            for name in self.layer_weights}
        self._last_matches = {
            name: tf.Variable(tf.zeros([0], tf.int32), shape=tf.TensorShape(None),
                              trainable=False, name="last_matches")
            for name in self.layers}

    @property
    def num_style_patches(self):
        """{end point: P}, the number of style patches per layer."""
        return {name: layer.num_patches for name, layer in self.layers.items()}

    def semantic_fraction(self):
        """{end point: mean share of a style patch's energy in the semantic channels}."""
        return {name: layer.semantic_fraction for name, layer in self.layers.items()}

    def _check_content_map(self, content_map):
        if self.has_map and content_map is None:
            raise ValueError("this loss has a style map; pass the content map as well")
        if not self.has_map and content_map is not None:
            raise ValueError("this loss has no style map; pass content_map=None")
        if content_map is not None and int(content_map.shape[-1]) != self.map_channels:
            raise ValueError(f"the content map has {content_map.shape[-1]} channels, the "
                             f"style map {self.map_channels}")

    def _match_band(self, layer, window, after=None):
        """int32 [rows, Qw]: argmax over all style patches for one band of output rows.

        The style chunks run one after another (control dependencies), so only one
        correlation block [rows, Qw, chunk] is alive at a time.
        """
        best_value = best_index = None
        for offset, kernel in zip(layer.chunk_starts, layer.kernels):
            deps = [best_value] if best_value is not None else ([] if after is None
                                                                 else [after])
            with tf.control_dependencies(deps):
                scores = tf.nn.conv2d(window, kernel, 1, "VALID")[0]
            value = tf.reduce_max(scores, axis=-1)
            index = tf.argmax(scores, axis=-1, output_type=tf.int32) + offset
            if best_value is None:
                best_value, best_index = value, index
            else:
                # Strictly greater: ties keep the lowest index, as one argmax would.
                better = value > best_value
                best_index = tf.where(better, index, best_index)
                best_value = tf.where(better, value, best_value)
        return best_index

    def _band_rows(self, layer, cols_out):
        """Output rows per band so that one block [rows, Qw, chunk] fits the budget."""
        widest = max(kernel.shape[-1] for kernel in layer.kernels)
        budget = self.match_budget_bytes // 4
        if isinstance(cols_out, int):
            return max(budget // (max(cols_out, 1) * widest), 1)
        return tf.maximum(budget // (tf.maximum(cols_out, 1) * widest), 1)

    def _match_layer(self, layer, augmented):
        """int32 [Qh, Qw]: the matches of one layer, band by band."""
        k = self.patch_size
        height, width = _layer_hw(augmented)
        rows_out, cols_out = _num_patches(height, k), _num_patches(width, k)
        rows = self._band_rows(layer, cols_out)
        if isinstance(rows_out, int) and isinstance(cols_out, int):
            # Static sizes (the usual traced optimisation step): unrolled bands, chained
            # so they run one at a time; this also compiles with XLA.
            bands, previous = [], None
            for start in range(0, rows_out, rows):
                previous = self._match_band(layer, augmented[:, start:start + rows + k - 1],
                                            previous)
                bands.append(previous)
            if not bands:
                return tf.zeros([rows_out, cols_out], tf.int32)
            return tf.concat(bands, axis=0) if len(bands) > 1 else bands[0]
        num_bands = (rows_out + rows - 1) // rows

        def band(i, found):
            start = i * rows
            return i + 1, found.write(
                i, self._match_band(layer, augmented[:, start:start + rows + k - 1]))

        found = tf.TensorArray(tf.int32, size=num_bands, infer_shape=False,
                               element_shape=tf.TensorShape([None, None]))
        _, found = tf.while_loop(lambda i, _: i < num_bands, band, [0, found],
                                 parallel_iterations=1)
        matches = tf.cond(num_bands > 0, found.concat,
                          lambda: tf.zeros([0, cols_out], tf.int32))
        return tf.reshape(matches, [rows_out, cols_out])

    @_NOT_AUTOGRAPH
    def match(self, output_features, content_map=None):
        """Nearest style patch of every output patch (no gradient).

        Args:
          output_features: {end point: float32 [1, h, w, C]} of the current image.
          content_map: float32 [1, H, W, M] in 0..255 at the output image's size, or None
            when the loss has no style map.

        Returns:
          {end point: int32 [h - k + 1, w - k + 1]}: index of the matched style patch,
          row-major over the style's patch grid (j = row * (w_s - k + 1) + col).
        """
        self._check_content_map(content_map)
        if content_map is not None:
            content_map = tf.stop_gradient(tf.convert_to_tensor(content_map, tf.float32))
        matches = {}
        for name, layer in self.layers.items():
            augmented = _augment(tf.stop_gradient(output_features[name]), content_map,
                                 layer.gamma)
            matches[name] = self._match_layer(layer, augmented)
        return matches

    def _energies(self, output_features, content_map, matches):
        """{end point: (feature part, semantic part)} of E_l, unweighted."""
        self._check_content_map(content_map)
        if content_map is not None:
            content_map = tf.stop_gradient(tf.convert_to_tensor(content_map, tf.float32))
        k = self.patch_size
        parts = {}
        for name, layer in self.layers.items():
            features = tf.convert_to_tensor(output_features[name])
            # float64 features (finite-difference checks) keep float64; all else float32.
            dtype = tf.float64 if features.dtype == tf.float64 else tf.float32
            features = tf.cast(features, dtype)
            style_features = tf.cast(layer.features_flat, dtype)
            index = tf.cast(matches[name], tf.int32)
            rows, cols = tf.shape(index)[0], tf.shape(index)[1]
            style_row = index // layer.patch_cols
            style_col = index % layer.patch_cols
            semantic = None
            if layer.semantic_flat is not None:
                semantic = tf.stop_gradient(layer.gamma * downsample_map(
                    content_map, _layer_hw(features)))
            energy = tf.constant(0.0, dtype)
            semantic_energy = tf.constant(0.0, dtype)
            for dy in range(k):
                for dx in range(k):
                    flat = (style_row + dy) * layer.style_width + style_col + dx
                    current = features[0, dy:dy + rows, dx:dx + cols]
                    target = tf.gather(style_features, flat)
                    energy += tf.reduce_sum(tf.square(current - target))
                    if semantic is not None:
                        semantic_energy += tf.cast(tf.stop_gradient(tf.reduce_sum(tf.square(
                            semantic[0, dy:dy + rows, dx:dx + cols]
                            - tf.gather(layer.semantic_flat, flat)))), dtype)
            parts[name] = (energy, semantic_energy)
        return parts

    @_NOT_AUTOGRAPH
    def loss_from_matches(self, output_features, content_map, matches):
        """E_s for given (frozen) matches.

        Args:
          output_features: as for match.
          content_map: as for match.
          matches: {end point: int [h - k + 1, w - k + 1]} as match returns.

        Returns:
          (total, terms): float32 scalar sum_l w_l E_l, and {end point: float32 scalar
          w_l E_l} (the weighted per-layer terms, which sum to the total); float64
          when the features are float64 (for finite-difference checks). The
          semantic part of E_l is a constant: no gradient reaches the content map.
        """
        terms = {name: self.layer_weights[name] * (feature_part + semantic_part)
                 for name, (feature_part, semantic_part)
                 in self._energies(output_features, content_map, matches).items()}
        total = tf.add_n(list(terms.values())) if terms else tf.constant(0.0)
        return total, terms

    @_NOT_AUTOGRAPH
    def split_call(self, output_features, content_map=None):
        """E_s split into the part the pixels can lower and the map mismatch.

        What the optimization minimizes (optimize_lib). The semantic part of E_s, the
        map mismatch of the matched patches, carries no gradient (the maps are
        constants), so minimizing the feature part alone moves the pixels exactly as
        minimizing E_s does. But it can be most of E_s's value: a doodle border that
        the style never shows (a mirrored doodle's B|A against the style's A|B) has no
        matching style patch, and its mismatch is a floor no pixel can lower. Reporting
        it apart makes "the loss fell" mean that the picture changed (issue 27: with
        the floor in, a doodle whose feature energy fell 70 % showed a 9 % fall).
        feature total + semantic total is E_s, as __call__ returns it.

        Args:
          output_features, content_map: as for __call__.

        Returns:
          (feature total float32 scalar, {end point: w_l * feature part of E_l},
           semantic total float32 scalar: sum_l w_l * map mismatch, no gradient).
        """
        matches = self.match(output_features, content_map)
        for name, index in matches.items():
            self._last_matches[name].assign(tf.reshape(index, [-1]))
        parts = self._energies(output_features, content_map, matches)
        terms = {name: self.layer_weights[name] * feature_part
                 for name, (feature_part, _) in parts.items()}
        semantic = [self.layer_weights[name] * semantic_part
                    for name, (_, semantic_part) in parts.items()]
        total = tf.add_n(list(terms.values())) if terms else tf.constant(0.0)
        semantic = tf.stop_gradient(tf.add_n(semantic)) if semantic else tf.constant(0.0)
        return total, terms, semantic

    def energy_parts(self, output_features, content_map=None):
        """{end point: (w_l * feature part, w_l * semantic part)} of E, as floats.

        The semantic part (map mismatch of the matched patches) enters the loss value
        but no pixel can lower it; this split says how much of a loss is that floor.
        """
        matches = self.match(output_features, content_map)
        return {name: (self.layer_weights[name] * float(feature_part),
                       self.layer_weights[name] * float(semantic_part))
                for name, (feature_part, semantic_part)
                in self._energies(output_features, content_map, matches).items()}

    @_NOT_AUTOGRAPH
    def __call__(self, output_features, content_map=None):
        """E_s of the current image: match (recomputed every call), then the loss.

        Args:
          output_features: {end point: float32 [1, h, w, C]} of the current image.
          content_map: float32 [1, H, W, M] in 0..255 at the output's size, or None when
            the loss has no style map.

        Returns:
          (total float32 scalar, {end point: float32 scalar weighted term}).
        """
        matches = self.match(output_features, content_map)
        for name, index in matches.items():
            self._last_matches[name].assign(tf.reshape(index, [-1]))
        return self.loss_from_matches(output_features, content_map, matches)

    def last_matches(self):
        """{end point: int32 np.ndarray [Q]} the flat matches of the last call."""
        return {name: var.numpy() for name, var in self._last_matches.items()}

    def usage(self):
        """{end point: number of distinct style patches used by the last call}.

        Few distinct patches against many output patches mean a repetitive result (the
        paper: a segment with few source patches repeats them).
        """
        return {name: int(np.unique(var.numpy()).size)
                for name, var in self._last_matches.items()}
