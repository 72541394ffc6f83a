"""Strict parsing of `--which_styles`: which styles to apply, and how outputs are named.

Two forms, as in Magenta's `image_stylization_transform`:

- a list, `[0,1,2]` (the brackets are optional: `0,1,2`, `2`): one output per style,
  named `{basename}_{style}`;
- a dict, `{0:0.3,2:0.7}`: one output mixing the styles with those weights, named as
  Magenta's `_describe_style` does: keys sorted, each written `{key}_{round(1000 * w):03d}`,
  joined by `_`, e.g. `{basename}_0_300_2_700`.

Weights are not normalized (Magenta): `{0:0.5}` is half of style 0's gamma/beta, not
style 0. Any finite weight up to MAX_ABS_WEIGHT in absolute value is allowed, including negative ones (extrapolating away
from a style) and weights above 1; a negative weight keeps Magenta's name, e.g.
`{0:-0.5}` gives `0_-500`. Styles absent from a dict get weight 0.

The text is tokenized by a small hand-written grammar; nothing is evaluated. Standard
library and numpy only, so the CLI can validate the flag before TensorFlow starts.
"""
import dataclasses
import math
import re

import numpy as np

from magenta_style import config as config_lib

# An unsigned integer style index (numbers: config.NUMBER_RE).
_INDEX_RE = re.compile(r"[0-9]+")


# The largest |weight| accepted, here and in the exported signatures. The network
# computes in float32, and from about 1e19 the instance-norm variances overflow and
# the output is NaN; 1e6 keeps thirteen orders of magnitude of margin and is far
# beyond any useful extrapolation (every pixel saturates long before).
MAX_ABS_WEIGHT = 1e6
# Error messages echo at most ECHO_LIMIT characters of a flag value (config.shorten).
ECHO_LIMIT = config_lib.ECHO_LIMIT
shorten = config_lib.shorten


class StyleSpecError(ValueError):
    """`--which_styles` is malformed or does not fit the model; the message is one line."""


@dataclasses.dataclass(frozen=True)
class StyleSpec:
    """A parsed `--which_styles` value, not yet checked against a model.

    Attributes:
      kind: "list" (one output per style) or "mix" (one output mixing the styles).
      styles: style indices in the order given (list form) or sorted (mix form).
      weights: the weight per entry of `styles` for the mix form; () for the list form.
      text: the original flag text, for error messages.
    """

    kind: str
    styles: tuple
    weights: tuple = ()
    text: str = ""

    def validate(self, num_styles):
        """Checks every index against the model.

        Args:
          num_styles: int >= 1, the number of styles the model has.

        Raises:
          StyleSpecError: an index is >= num_styles.
        """
        for s in self.styles:
            if s >= num_styles:
                raise StyleSpecError(
                    f"--which_styles={shorten(self.text)}: style {s} does not exist; the model has "
                    f"{num_styles} style(s), 0..{num_styles - 1}")

    def weight_rows(self, num_styles):
        """The style weight rows fed to the model, one per output.

        Args:
          num_styles: int >= 1, the number of styles the model has.

        Returns:
          float32 [num_outputs, num_styles]: one-hot rows for the list form, a single
          (unnormalized) mixture row for the mix form.

        Raises:
          StyleSpecError: an index is >= num_styles.
        """
        self.validate(num_styles)
        if self.kind == "list":
            rows = np.zeros([len(self.styles), num_styles], np.float32)
            rows[np.arange(len(self.styles)), list(self.styles)] = 1.0
            return rows
        row = np.zeros([1, num_styles], np.float32)
        row[0, list(self.styles)] = self.weights
        return row

    def suffixes(self, names=None):
        """The name suffix of each output (without the basename or extension).

        Args:
          names: optional name per style index (the arbitrary model's style image
            stems), used instead of the indices.

        Returns:
          list of str, one per output, in the order of `weight_rows`: "2" for style 2 in
          the list form; "0_300_2_700" for `{0:0.3, 2:0.7}`.
        """
        label = (lambda s: names[s]) if names else str
        if self.kind == "list":
            return [label(s) for s in self.styles]
        return ["_".join(f"{label(s)}_{round(w * 1000):03d}"
                         for s, w in zip(self.styles, self.weights))]

    def output_names(self, basename, extension="png"):
        """Output file names for one input image.

        Args:
          basename: str, e.g. the input's file stem.
          extension: str without the dot.

        Returns:
          list of str, one per output, e.g. ["photo_0.png", "photo_2.png"].
        """
        return [f"{basename}_{suffix}.{extension}" for suffix in self.suffixes()]


def _fail(text, what):
    raise StyleSpecError(f"--which_styles={shorten(text)}: {what}")


def _parse_index(text, token):
    token = token.strip()
    if not token:
        _fail(text, "empty entry (a stray comma?)")
    if token.startswith("-") and _INDEX_RE.fullmatch(token[1:]):
        _fail(text, f"style index {token} is negative")
    if not _INDEX_RE.fullmatch(token):
        _fail(text, f"{shorten(token)!r} is not a style index (a non-negative integer)")
    return int(token)


def _parse_weight(text, key, token):
    token = token.strip()
    if config_lib.NON_FINITE_RE.fullmatch(token):
        _fail(text, f"the weight of style {key} is {token}; weights must be finite numbers")
    if not config_lib.NUMBER_RE.fullmatch(token):
        _fail(text, f"the weight of style {key}, {shorten(token)!r}, is not a number")
    value = float(token)
    # The model computes in float32: far below its overflow, mixes give NaN.
    if not math.isfinite(value) or abs(value) > MAX_ABS_WEIGHT:
        _fail(text, f"the weight of style {key}, {shorten(token, 24)}, is too large: at most "
              f"{MAX_ABS_WEIGHT:g} in absolute value (larger weights overflow float32)")
    return value


def parse(text):
    """Parses a `--which_styles` value.

    Args:
      text: str, e.g. "[0,1,2]", "0,1,2" or "{0:0.3,2:0.7}". Whitespace is ignored.

    Returns:
      A StyleSpec. Check it against a model with `validate(num_styles)`.

    Raises:
      StyleSpecError: malformed syntax, an empty list or dict, a negative or duplicate
        index, or a weight that is not a finite number.
    """
    if not isinstance(text, str):
        raise StyleSpecError(f"--which_styles must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        _fail(text, "empty; give a list like [0,1] or a mix like {0:0.3,2:0.7}")
    if stripped.startswith("{"):
        return _parse_mix(text, stripped)
    return _parse_list(text, stripped)


def _parse_list(text, stripped):
    body = stripped
    if body.startswith("["):
        if not body.endswith("]"):
            _fail(text, "a list must end with ']'")
        body = body[1:-1]
    elif body.endswith("]") or body.endswith("}"):
        _fail(text, f"unbalanced '{body[-1]}'")
    if not body.strip():
        _fail(text, "the list is empty")
    styles, seen = [], set()  # The set keeps the duplicate check linear.
    for token in body.split(","):
        if ":" in token:
            _fail(text, "a list cannot hold 'style:weight' pairs; write a mix as "
                  "'{0:0.3,2:0.7}' (quoted: an unquoted shell splits it)")
        index = _parse_index(text, token)
        if index in seen:
            _fail(text, f"style {index} is listed twice")
        seen.add(index)
        styles.append(index)
    return StyleSpec(kind="list", styles=tuple(styles), text=text)


def _parse_mix(text, stripped):
    if not stripped.endswith("}"):
        _fail(text, "a mix must end with '}'")
    body = stripped[1:-1]
    if not body.strip():
        _fail(text, "the mix is empty")
    pairs = {}
    for entry in body.split(","):
        if entry.count(":") != 1:
            what = "empty entry (a stray comma?)" if not entry.strip() else (
                f"{shorten(entry.strip())!r} is not a 'style:weight' pair")
            _fail(text, what)
        key_text, weight_text = entry.split(":")
        key = _parse_index(text, key_text)
        if key in pairs:
            _fail(text, f"style {key} appears twice")
        pairs[key] = _parse_weight(text, key, weight_text)
    keys = tuple(sorted(pairs))
    return StyleSpec(kind="mix", styles=keys, weights=tuple(pairs[k] for k in keys), text=text)


def all_styles(num_styles):
    """The list form covering every style: one output per style.

    Args:
      num_styles: int >= 1.

    Returns:
      A StyleSpec equivalent to `[0,1,...,num_styles-1]`.
    """
    styles = tuple(range(num_styles))
    return StyleSpec(kind="list", styles=styles, text="[" + ",".join(map(str, styles)) + "]")


def check_strength(strength):
    """Returns `strength` as a float if it is a finite number in [0, 1].

    Strength scales a style towards the photo (0: the photo, 1: the full style); it is
    checked here, with the style weights, so commands and the library agree.

    Raises:
      ValueError: anything else (one line, naming --strength).
    """
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"--strength={strength!r}: must be a number in [0, 1]") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"--strength={strength}: must be a number in [0, 1] (0: the photo, "
                         "1: the full style)")
    return value
