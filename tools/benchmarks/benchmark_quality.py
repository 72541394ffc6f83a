"""Scores stylization systems with "content kept" and "style taken" (issue 27).

    python tools/benchmarks/benchmark_quality.py --output_dir=/tmp/quality \\
        --system=anchor --system=optimize --system="optimize:recipe=gatys" \\
        [--system=model:TRAIN_DIR:STYLE_DIR] [--system=results:DIR] \\
        [--pairs=PHOTO:STYLE,...] [--photos=DIR --photo_size=256]

The two numbers are defined in `magenta_style/networks/quality.py` (HED edge correlation;
1 - Gram distance ratio over HED's VGG blocks 1-4), exactly as issue 27 defines them.

Systems (`--system`, repeatable):
- `anchor`: Magenta's released arbitrary model, read from
  ../shared/data/magenta_arbitrary_outputs (its 10 pairs; the file names say the
  photo and the style). Scores 0.42 content kept, 0.68 style taken.
- `results:DIR`: any system's saved results, named `{photo}_stylized_{style}[_*].ext`
  (the anchor's naming), photos and styles found in --content_dir / --style_dir.
- `optimize[:key=value,...]`: `optimize_lib.optimize` on each pair, with
  `--vgg_checkpoint=hed --image_size=256 --scales=2 --iterations=100` unless overridden
  (keys are OptimizeConfig fields: `recipe=gatys`, `style_strength=2`,
  `style_loss=patch`, `iterations=50`, ...). Pairs: --pairs, default the anchor's 10.
- `model:PATH:STYLE_DIR`: an N-style or BOE network (a checkpoint, training directory
  or export); STYLE_DIR holds one image per style in style order (the
  `<demo_data_dir>/styles/` layout). Every photo of --photos (longer side --photo_size)
  with every style.

Writes to --output_dir (atomically): quality.json (every result and each system's
means), quality.md (the same as markdown tables) and contact_sheet.png (one row per
result: photo, style, result, the two numbers under the result).
"""
import argparse
import glob
import io
import json
import os
import re
import sys
import time

import numpy as np
from PIL import Image
from PIL import ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
ANCHOR_DIR = os.path.join(DATA, "magenta_arbitrary_outputs")
# What the anchor scores (issue 27's table, reproduced by `--system=anchor`).
ANCHOR_MEANS = (0.42, 0.68)
OPTIMIZE_DEFAULTS = dict(vgg_checkpoint="hed", image_size=256, scales=2, iterations=100)

from magenta_style.media import fileio  # pylint: disable=wrong-import-position
from magenta_style.networks import quality  # pylint: disable=wrong-import-position

_RESULT_NAME = re.compile(r"^(?P<photo>.+?)_stylized_(?P<style>.+?)(_\d+)?$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class BenchmarkError(ValueError):
    """A bad system spec or a missing file; one line."""


def load_rgb(path):
    """uint8 [H, W, 3] of an image file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{path}: cannot be read as an image ({e})") from None


def _find(directory, stem):
    """The image in `directory` named `stem` or `stem_sq` (the shared data's naming)."""
    for name in (stem, f"{stem}_sq"):
        for suffix in IMAGE_SUFFIXES:
            path = os.path.join(directory, name + suffix)
            if os.path.exists(path):
                return path
    raise BenchmarkError(f"no image named {stem} in {directory}")


def result_pairs(directory, content_dir=os.path.join(DATA, "content"),
                 style_dir=os.path.join(DATA, "styles")):
    """[(photo path, style path, result path)] for `{photo}_stylized_{style}` files."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        stem, suffix = os.path.splitext(os.path.basename(path))
        match = _RESULT_NAME.match(stem)
        if suffix.lower() not in IMAGE_SUFFIXES or not match:
            continue
        found.append((_find(content_dir, match["photo"]), _find(style_dir, match["style"]),
                      path))
    if not found:
        raise BenchmarkError(f"no {{photo}}_stylized_{{style}} images in {directory}")
    return found


def anchor_pairs():
    """The anchor's 10 (photo, style, result) paths."""
    return result_pairs(ANCHOR_DIR)


def _parse_overrides(text):
    from magenta_style import config as config_lib  # pylint: disable=import-outside-toplevel
    fields = {f.name: f for f in __import__("dataclasses").fields(config_lib.OptimizeConfig)}
    overrides = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise BenchmarkError(f"optimize:{text}: {key!r} is not an OptimizeConfig field")
        default = fields[key].default
        if isinstance(default, bool):
            value = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        overrides[key] = value
    return overrides


def _fit(image, size):
    """uint8 image with its longer side `size` (bicubic)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return quality.bicubic_resize(image, shape)


class _Runner:
    """Yields (photo, style, result, seconds) per pair for one system spec."""

    def __init__(self, spec, args):
        self.spec, self.args = spec, args
        self.kind, _, self.rest = spec.partition(":")
        if self.kind not in ("anchor", "results", "optimize", "model"):
            raise BenchmarkError(f"--system={spec}: unknown kind {self.kind!r} (anchor, "
                                 "results:DIR, optimize[:k=v,...], model:PATH:STYLE_DIR)")

    def _pairs(self):
        if self.args.pairs:
            pairs = []
            for item in self.args.pairs.split(","):
                photo, _, style = item.partition(":")
                pairs.append((photo, style))
            return pairs
        return [(photo, style) for photo, style, _ in anchor_pairs()]

    def results(self):
        if self.kind in ("anchor", "results"):
            directory = ANCHOR_DIR if self.kind == "anchor" else self.rest
            for photo, style, result in result_pairs(directory, self.args.content_dir,
                                                     self.args.style_dir):
                yield photo, style, load_rgb(result), None
        elif self.kind == "optimize":
            yield from self._optimize()
        else:
            yield from self._model()

    def _optimize(self):
        from magenta_style import config as config_lib  # pylint: disable=import-outside-toplevel
        from magenta_style.networks import vgg  # pylint: disable=import-outside-toplevel
        from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
        settings = {**OPTIMIZE_DEFAULTS, **_parse_overrides(self.rest)}
        vgg_net = None
        for photo, style in self._pairs():
            try:
                cfg = config_lib.OptimizeConfig(content_image=photo, style_images=(style,),
                                                **settings)
            except config_lib.ConfigError as e:
                raise BenchmarkError(f"--system={self.spec}: {e}") from None
            if vgg_net is None:  # Built once, with the pooling the config resolved.
                vgg_net = vgg.get_vgg16(cfg.vgg_checkpoint, cfg.vgg_pooling, cfg.vgg,
                                        conv_end_points=True)
            began = time.perf_counter()
            result = optimize_lib.optimize(cfg, vgg_net=vgg_net)
            yield photo, style, result.image, time.perf_counter() - began

    def _model(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
        path, _, style_dir = self.rest.rpartition(":")
        if not path or not os.path.isdir(style_dir):
            raise BenchmarkError(f"--system={self.spec}: expected model:PATH:STYLE_DIR with "
                                 "STYLE_DIR a directory of style images in style order")
        styles = sorted(p for p in glob.glob(os.path.join(style_dir, "*"))
                        if p.lower().endswith(IMAGE_SUFFIXES))
        model, model_config = stylizer.load(path)
        if len(styles) != model_config.num_styles:
            raise BenchmarkError(f"{style_dir} has {len(styles)} style images, the model "
                                 f"{model_config.num_styles} styles")
        photos = sorted(p for p in glob.glob(os.path.join(self.args.photos, "*"))
                        if p.lower().endswith(IMAGE_SUFFIXES))
        for photo in photos:
            rgb = _fit(load_rgb(photo), self.args.photo_size).astype(np.float32) / 255.0
            for index, style in enumerate(styles):
                began = time.perf_counter()
                out = stylizer.call_model(model, tf.constant(rgb[None]), tf.constant([index]))
                yield photo, style, np.asarray(out)[0], time.perf_counter() - began


def _panel(image, size, lines):
    image = quality.to_uint8(image)
    pil = Image.fromarray(_fit(image, size))
    canvas = Image.new("RGB", (size, size + 12 * len(lines) + 2), "white")
    canvas.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((2, size + 1 + 12 * i), line, fill=(0, 0, 0))
    return canvas


def contact_sheet(rows, size=160):
    """PNG bytes: one row per result: photo | style | result with its two numbers."""
    panels = []
    for row in rows:
        cells = [_panel(row["photo_image"], size, [os.path.basename(row["photo"])[:26], ""]),
                 _panel(row["style_image"], size, [os.path.basename(row["style"])[:26], ""]),
                 _panel(row["result_image"], size, [
                     row["system"][:26],
                     f"content {row['content_kept']:.2f}  style {row['style_taken']:.2f}"])]
        width = sum(c.width for c in cells) + 4 * (len(cells) - 1)
        line = Image.new("RGB", (width, max(c.height for c in cells)), "white")
        x = 0
        for cell in cells:
            line.paste(cell, (x, 0))
            x += cell.width + 4
        panels.append(line)
    sheet = Image.new("RGB", (max(p.width for p in panels),
                              sum(p.height for p in panels) + 4 * len(panels)), "white")
    y = 0
    for panel in panels:
        sheet.paste(panel, (0, y))
        y += panel.height + 4
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return buffer.getvalue()


def summarize(rows):
    """{system: {"pairs", "content_kept", "style_taken", "seconds"}} (means)."""
    means = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        seconds = [r["seconds"] for r in mine if r["seconds"] is not None]
        means[system] = {
            "pairs": len(mine),
            "content_kept": float(np.mean([r["content_kept"] for r in mine])),
            "style_taken": float(np.mean([r["style_taken"] for r in mine])),
            "seconds": float(np.mean(seconds)) if seconds else None}
    return means


def markdown(rows, means, command):
    lines = [f"Made by `{command}`.", "",
             "| system | pairs | content kept | style taken | seconds per image |",
             "|---|---|---|---|---|"]
    for system, m in means.items():
        seconds = "" if m["seconds"] is None else f"{m['seconds']:.1f}"
        lines.append(f"| {system} | {m['pairs']} | {m['content_kept']:.3f} | "
                     f"{m['style_taken']:.3f} | {seconds} |")
    lines += ["", "| system | photo | style | content kept | style taken |",
              "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {os.path.basename(r['photo'])} | "
                     f"{os.path.basename(r['style'])} | {r['content_kept']:.3f} | "
                     f"{r['style_taken']:.3f} |")
    return "\n".join(lines) + "\n"


def run(systems, args, scorer=None, log=print):
    """Scores every system; returns the rows (with images) and the means."""
    scorer = scorer or quality.QualityScorer()
    rows = []
    for spec in systems:
        runner = _Runner(spec, args)
        for photo, style, result, seconds in runner.results():
            photo_image, style_image = load_rgb(photo), load_rgb(style)
            score = scorer.score(photo_image, style_image, result)
            rows.append({"system": spec, "photo": photo, "style": style, "seconds": seconds,
                         **score.to_dict(), "photo_image": photo_image,
                         "style_image": style_image, "result_image": result})
            log(f"{spec}  {os.path.basename(photo)} x {os.path.basename(style)}: content kept "
                f"{score.content_kept:.3f}, style taken {score.style_taken:.3f}"
                + ("" if seconds is None else f" ({seconds:.1f} s)"))
    return rows, summarize(rows)


def write(output_dir, rows, means, command):
    """quality.json, quality.md and contact_sheet.png in output_dir, atomically."""
    table = [{k: v for k, v in r.items() if not k.endswith("_image")} for r in rows]
    fileio.write_bytes_atomic(os.path.join(output_dir, "quality.json"), json.dumps(
        {"command": command, "means": means, "results": table}, indent=1).encode())
    fileio.write_bytes_atomic(os.path.join(output_dir, "quality.md"),
                              markdown(rows, means, command).encode())
    fileio.write_bytes_atomic(os.path.join(output_dir, "contact_sheet.png"),
                              contact_sheet(rows))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", action="append", default=[],
                        help="anchor, results:DIR, optimize[:k=v,...], model:PATH:STYLE_DIR")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--pairs", default="", help="PHOTO:STYLE,... for optimize systems "
                        "(default: the anchor's 10 pairs)")
    parser.add_argument("--photos", default=os.path.join(DATA, "content"),
                        help="photo directory for model systems")
    parser.add_argument("--photo_size", type=int, default=256)
    parser.add_argument("--content_dir", default=os.path.join(DATA, "content"))
    parser.add_argument("--style_dir", default=os.path.join(DATA, "styles"))
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    systems = args.system or ["anchor"]
    command = "python tools/benchmarks/benchmark_quality.py " + " ".join(argv)
    try:
        rows, means = run(systems, args, log=lambda line: print(line, flush=True))
        write(args.output_dir, rows, means, command)
    except (BenchmarkError, quality.QualityError) as e:
        print(f"benchmark_quality: error: {e}", file=sys.stderr)
        return 2
    for system, m in means.items():
        print(f"{system}: {m['pairs']} pairs, content kept {m['content_kept']:.3f}, "
              f"style taken {m['style_taken']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
