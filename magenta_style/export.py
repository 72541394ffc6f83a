"""Export a trained model as a SavedModel for TF Serving, TF Hub / Colab and TFLite.

    python -m magenta_style.export --checkpoint=train_dir --export_dir=exports/magenta_style

writes `exports/magenta_style/<N>/` where N is one more than the largest existing
version (TF Serving serves the largest). `--checkpoint` is a training directory, a
native checkpoint prefix or a Magenta TF1 checkpoint prefix. Existing versions are
never overwritten; the export is written beside them and renamed into place when
complete. Signatures: see magenta_style/serving/signatures.py or the README.
"""
# Before anything imports TensorFlow, which reads its C++ log level once: no
# "failed call to cuInit" line on machines without a GPU (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import math
import sys

from absl import flags

from magenta_style import config
from magenta_style.media import limits
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style.serving import warmup

PROGRAM = "magenta_style.export"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportArgs:
    """Validated command-line settings; a field with a default is a flag.

    `memory_budget_bytes` comes from --memory_budget_gib (default
    limits.DEFAULT_MEMORY_BUDGET_BYTES).
    """

    checkpoint: str = None
    export_dir: str = None
    version: int = None
    warmup_size: int = warmup.DEFAULT_WARMUP_SIZE
    model_name: str = warmup.DEFAULT_MODEL_NAME
    allow_different_model: bool = False
    compute_dtype: str = "float32"
    style_images: str = None
    style_image_size: int = config.DEFAULT_STYLE_IMAGE_SIZE
    memory_budget_bytes: int


def _define_flags(fv):
    cli.define_field_flags(fv, ExportArgs, {
        "checkpoint": "Training directory, native checkpoint prefix or Magenta TF1 "
                      "checkpoint prefix.",
        "export_dir": "The model's base directory; the export goes to "
                      "<export_dir>/<version>/.",
        "version": "Version number (default: largest existing + 1).",
        "warmup_size": "Side of the TF Serving warmup image; 0 writes no warmup requests.",
        "model_name": "Model name put in the warmup requests.",
        "allow_different_model": "Add the version even when the base's versions hold "
                                 "another model (num_styles, alpha).",
        "compute_dtype": "What the convolutions compute in. bfloat16 is about 2x faster on "
                         "CPUs with AVX512_BF16 or AMX and on GPUs (mean error ~1 grey "
                         "level, see docs/speed.md); weights, norms and outputs stay "
                         "float32. Recorded in the metadata.",
        "style_images": "Arbitrary-style checkpoints: export a style bank instead, an "
                        "N-style export whose styles are these images' predicted gamma/beta "
                        "(comma-separated files, folders, quoted globs; names in the "
                        "metadata).",
        "style_image_size": "Arbitrary-style checkpoints: the style images' shorter side for "
                            "the style bank, and the content's when fed as its own style by "
                            "the strength signature (0: as given).",
    }, choices={"compute_dtype": transformer.COMPUTE_DTYPES},
        bounds={"version": (1, None), "warmup_size": (0, warmup.MAX_WARMUP_SIZE),
                "style_image_size": (0, None)})
    flags.DEFINE_float("memory_budget_gib", limits.DEFAULT_MEMORY_BUDGET_BYTES / 2**30,
                       "Memory one request may take, GiB. With the model's measured bytes per "
                       "pixel (docs/limits.md) it sets the pixel cap every signature checks; "
                       "larger requests fail with InvalidArgument.", flag_values=fv)


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """Parses argv (argv[0] is the program name) into ExportArgs; raises cli.UsageError."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("checkpoint", "export_dir"))
    budget = fv.memory_budget_gib
    if not math.isfinite(budget) or budget <= 0:
        raise cli.UsageError(f"--memory_budget_gib={budget}: must be a positive number of GiB")
    return ExportArgs(checkpoint=fv.checkpoint, export_dir=fv.export_dir, version=fv.version,
                      warmup_size=fv.warmup_size, model_name=fv.model_name,
                      memory_budget_bytes=int(budget * 2**30),
                      allow_different_model=fv.allow_different_model,
                      compute_dtype=fv.compute_dtype, style_images=fv.style_images,
                      style_image_size=fv.style_image_size)


def run(args, stderr=None):
    """Exports; returns exit status 0. Raises cli.UsageError for bad inputs."""
    stderr = stderr or sys.stderr
    stderr.write(f"{PROGRAM}: loading {args.checkpoint}\n")
    try:
        version_dir, model_config = export_lib.export_checkpoint(
            args.checkpoint, args.export_dir, version=args.version,
            warmup_size=args.warmup_size, model_name=args.model_name,
            memory_budget_bytes=args.memory_budget_bytes,
            allow_different_model=args.allow_different_model,
            compute_dtype=args.compute_dtype, bank_images=args.style_images,
            style_image_size=args.style_image_size)
    except checkpoints.CheckpointError as e:
        raise cli.UsageError(f"--checkpoint: {e}") from None
    except export_lib.ExportError as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"--export_dir={args.export_dir!r}: {e.strerror or e}") from None
    what = (f"{model_config.num_styles} style(s)" if model_config.generator != "arbitrary"
            else "the arbitrary-style model")
    stderr.write(f"{PROGRAM}: exported {what} "
                 f"(alpha {model_config.alpha}, {args.compute_dtype}) to {version_dir}\n")
    return 0


def main(argv):
    """The command; usage errors print one line on stderr and return 2."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console-script entry point (`magenta-style-export`)."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
