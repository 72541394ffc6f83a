"""The style dataset of `train --style_images`, built once and cached in the train_dir.

    python -m magenta_style.train --style_images='my_styles/*.jpg' --content_images=... \\
        --vgg_checkpoint=hed --train_dir=/tmp/mine

`ensure_style_dataset` expands `--style_images` with stylize's parser
(inference/style_images.expand: comma-separated files, folders and globs), then builds
their style dataset with create_style_dataset's code (style_dataset.build_style_dataset)
as `<train_dir>/style_dataset-<key>.tfrecord`, or reuses that file when it is there.

The key is a hash of everything the file's bytes depend on: each image's content
(SHA-256) and style name (its file stem) in label order, the VGG source, the
style image size and the layout's version. Content hashes rather than size and mtime
for the images: they are small (hashing them takes milliseconds next to the VGG pass),
and their mtimes say little (`cp`, `git checkout` and unzip give an unchanged image a
new mtime, which would rebuild needlessly; an edit that keeps the size within the
clock's granularity would be missed). The VGG source is keyed by its name plus, for a
file, its path, size and mtime: a VGG checkpoint is hundreds of MB (hashing it would
add seconds to every start) and is replaced whole, never edited in place.

Because the key is in the file name, a complete file (written atomically) is always
the dataset of its inputs: there is no separate record that could disagree with it. A
JSON manifest beside it (`style_dataset-<key>.json`) lists the inputs for people; after
a build, the train_dir's other cached style datasets are removed.
"""
import glob
import hashlib
import json
import os
import re

import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import style_dataset
from magenta_style.inference import style_images
from magenta_style.media import fileio
from magenta_style.networks import vgg_weights

PREFIX = "style_dataset-"
# Bump when what the file holds for the same inputs changes (its layout, the JPEG
# quality, the Gram end points): every cache is then rebuilt once.
LAYOUT_VERSION = 1
_KEY_CHARS = 16
_CACHED = re.compile(r"^" + re.escape(PREFIX) + r"[0-9a-f]{%d}\.(tfrecord|json)$" % _KEY_CHARS)
_LEFTOVER = re.compile(r"^\.tmp-[0-9a-f]+-" + re.escape(PREFIX))


class StyleCacheError(ValueError):
    """The style images cannot be used or their dataset cannot be written; one line,
    naming the input."""


def _sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise StyleCacheError(f"cannot read style image {path}: {e.strerror or e}") from None
    return digest.hexdigest()


def _vgg_files(source):
    """The files behind a VGG source: [] for a name ("imagenet", "standin:SEED")."""
    path = source
    if source == vgg_weights.HED_SOURCE:
        try:
            path = vgg_weights.hed_weights_path()
        except vgg_weights.VGGWeightsError:
            return []  # The build then fails with the one-line reason.
    path = os.path.expanduser(path)
    if os.path.isdir(path):  # A TF-slim checkpoint directory.
        return sorted(os.path.join(path, n) for n in os.listdir(path)
                      if os.path.isfile(os.path.join(path, n)))
    # A file (.h5), or a TF-slim prefix whose files are prefix.index, prefix.data-*.
    return ([path] if os.path.isfile(path) else []) + sorted(
        glob.glob(glob.escape(path) + ".*"))


def vgg_fingerprint(source):
    """{"source": str, "files": [[absolute path, size, mtime_ns], ...]} of a VGG source."""
    files = []
    for path in _vgg_files(source):
        stat = os.stat(path)
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return {"source": source, "files": files}


def manifest(files, vgg_checkpoint, style_image_size):
    """The cache key's inputs (and the image paths, which are not part of the key).

    Args:
      files: list of style image paths, in label order.
      vgg_checkpoint: the VGG source (vgg.build_vgg's).
      style_image_size: int >= 0 (0: each file's size).

    Returns:
      (key: 16 hex characters, manifest: JSON-ready dict).
    """
    names = style_dataset.default_style_names(files)
    keyed = {"layout_version": LAYOUT_VERSION,
             "styles": [[name, _sha256(path)] for name, path in zip(names, files)],
             "vgg": vgg_fingerprint(vgg_checkpoint),
             "style_image_size": int(style_image_size)}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode("utf-8")).hexdigest()
    return key[:_KEY_CHARS], {**keyed, "files": [os.path.abspath(p) for p in files]}


def cached_path(train_dir, key):
    return os.path.join(train_dir, f"{PREFIX}{key}.tfrecord")


def ensure_style_dataset(train_dir, text, vgg_checkpoint, style_image_size=0, progress=None):
    """The style dataset of `--style_images=text` in train_dir: reused, or built.

    Args:
      train_dir: the run's directory (created if needed).
      text: `--style_images`: comma-separated files, folders and quoted globs.
      vgg_checkpoint: VGG-16 weights for the Gram matrices (vgg.build_vgg's sources).
      style_image_size: int >= 0: each image's shorter side first (0: as the file is).
      progress: optional callable(str), one line per step and per image.

    Returns:
      (path of the TFRecord file, built: bool; False when an existing one was reused).

    Raises:
      StyleCacheError: an entry matches no image, an image cannot be decoded or is too
        small, the VGG source cannot be read, or train_dir cannot be written.
    """
    progress = progress or (lambda line: None)
    try:
        files = style_images.expand(text)
    except style_images.StyleImagesError as e:
        raise StyleCacheError(str(e)) from None
    key, record = manifest(files, vgg_checkpoint, style_image_size)
    path = cached_path(train_dir, key)
    if os.path.isfile(path):
        progress(f"style dataset: reusing {path} ({len(files)} style image(s); images, VGG "
                 "source and size unchanged)")
        return path, False
    try:
        fileio.ensure_writable_dir(train_dir)
    except OSError as e:
        raise StyleCacheError(f"--train_dir={train_dir} cannot be created or written: "
                              f"{e.strerror or e}") from None
    progress(f"style dataset: building {path} from {len(files)} style image(s) with VGG "
             f"{vgg_checkpoint}")

    def image_done(done, total, image_path):
        progress(f"  style image {done}/{total}: {image_path}")

    try:
        style_dataset.build_style_dataset(
            path, files, vgg_checkpoint, style_size=style_image_size or None,
            progress=image_done)
        config_lib.write_json_atomic(os.path.join(train_dir, f"{PREFIX}{key}.json"), record)
    except style_dataset.StyleDatasetError as e:
        raise StyleCacheError(f"--style_images: {' '.join(str(e).split())}") from None
    except vgg_weights.VGGWeightsError as e:
        raise StyleCacheError(' '.join(str(e).split())) from None
    except OSError as e:
        raise StyleCacheError(f"cannot write {path}: {e.strerror or e}") from None
    except tf.errors.OpError as e:  # TFRecordWriter's errors are not OSErrors.
        raise StyleCacheError(
            f"cannot write {path}: {' '.join(e.message.split())[:200]}") from None
    _remove_others(train_dir, key)
    return path, True


def _remove_others(train_dir, key):
    """Removes the train_dir's cached style datasets of other inputs, and the temporary
    files of builds that were killed."""
    for name in os.listdir(train_dir):
        stale = _CACHED.match(name) and not name.startswith(f"{PREFIX}{key}.")
        if stale or _LEFTOVER.match(name):
            try:
                os.remove(os.path.join(train_dir, name))
            except OSError:
                pass  # Left for the next build; the run does not need it gone.
