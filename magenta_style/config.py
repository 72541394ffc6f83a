"""Frozen, validated configuration objects and their JSON form.

Layer 0 of the package: standard library only (no TensorFlow, no absl), so any
module and any tool can read a saved config cheaply.

`config.json` is written next to every checkpoint and inside every export, so a
model is always rebuilt from what it was trained with; nobody retypes
`--num_styles` or `--alpha`.
"""
import dataclasses
import json
import os
import tempfile

CONFIG_FILENAME = "config.json"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild the transformer network.

    Attributes:
      num_styles: number of learned styles (rows of every gamma/beta table), >= 1.
      alpha: width multiplier; layer widths are `int(alpha * n)` for n in 32/64/128.
      style_names: optional human-readable name per style (empty, or num_styles long).
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

    def to_dict(self):
        return {"num_styles": self.num_styles, "alpha": float(self.alpha),
                "style_names": list(self.style_names)}

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
    """Writes `payload` as pretty JSON to `path` via a temporary file + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model_config(directory, model_config, extra=None):
    """Writes `{directory}/config.json` with a "model" section and optional extra sections.

    Existing sections other than "model" (e.g. "train" written by the trainer) are kept
    unless `extra` replaces them.
    """
    path = os.path.join(directory, CONFIG_FILENAME)
    payload = {}
    if os.path.exists(path):
        with open(path) as f:
            payload = json.load(f)
    payload["model"] = model_config.to_dict()
    payload.update(extra or {})
    write_json_atomic(path, payload)
    return path


def read_config_json(directory):
    """Returns the parsed `{directory}/config.json`, or None when there is none."""
    path = os.path.join(directory, CONFIG_FILENAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None


def load_model_config(directory):
    """Returns the ModelConfig saved in `{directory}/config.json`, or None."""
    payload = read_config_json(directory)
    if payload is None:
        return None
    if "model" not in payload:
        raise ConfigError(f"{os.path.join(directory, CONFIG_FILENAME)} has no 'model' section")
    return ModelConfig.from_dict(payload["model"])
