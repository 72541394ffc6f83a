"""Evaluation (Magenta's image_stylization_evaluate): per-style losses and style grids.

- `per_style_losses`: every evaluation image stylized in every style; the batch-mean
  losses (Magenta's names) per style, against that style's Gram matrices.
- `style_grid`: a picture of the model. First row: an empty cell, then each style
  image; then one row per evaluation image: the image, then the image in every
  style. With crossover, the style images themselves are stylized too (one row per
  style image). Written as PNG and to TensorBoard.
- `optimum_losses` (with optimum_iterations > 0): the amortization gap, the loss of
  the per-image optimum (optimize_lib, started from the network's output, on the
  network's own training loss) next to the network's.
"""
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import pipeline
from magenta_style.data import style_dataset
from magenta_style.inference import stylizer
from magenta_style.media import fileio
from magenta_style.media import images
from magenta_style.networks import checkpoints
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights
from magenta_style.training import objective
from magenta_style.training import summaries

GRID_PADDING = 2


class EvalError(ValueError):
    """Evaluation cannot run; the message is one line for the user."""


def stylize_all(model, images, num_styles, batch_size=8):
    """Every image in every style.

    Args:
      model: a StyleTransferNetwork.
      images: float32 [N, H, W, 3] in [0, 1].
      num_styles: styles to render (0 .. num_styles - 1).
      batch_size: images per model call.

    Returns:
      np.float32 [num_styles, N, H, W, 3] in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    stylize_fn = stylizer.make_stylize_fn(model, num_styles)
    out = []
    for style in np.eye(num_styles, dtype=np.float32):
        rows = []
        for start in range(0, int(images.shape[0]), batch_size):
            chunk = images[start:start + batch_size]
            weights = tf.tile(style[None], [tf.shape(chunk)[0], 1])
            rows.append(stylize_fn(chunk, weights).numpy())
        out.append(np.concatenate(rows))
    return np.stack(out)


def _fit(image, size):
    """Resizes (bilinear, aspect kept, centred on white) into a size x size cell."""
    image = tf.convert_to_tensor(image, tf.float32)
    resized = tf.image.resize_with_pad(image, size, size)
    pad_mask = tf.image.resize_with_pad(tf.ones_like(image), size, size)
    return (resized + (1.0 - pad_mask)).numpy()


def style_grid(stylized, content, style_images=None, crossover=None):
    """Assembles a style grid image.

    Args:
      stylized: float [S, N, H, W, 3], stylize_all(content).
      content: float [N, H, W, 3], the evaluation images.
      style_images: optional list of S float [h, w, 3] style images (header row).
      crossover: optional float [S, S, H, W, 3]: stylize_all(style images); adds one
        row per style image.

    Returns:
      np.float32 [rows * (H + p), (S + 1) * (W + p), 3] in [0, 1] (white padding).
    """
    num_styles, num_images, height, width, _ = stylized.shape
    cell = max(height, width)
    rows = []
    blank = np.ones([cell, cell, 3], np.float32)
    if style_images is not None:
        rows.append([blank] + [_fit(s, cell) for s in style_images])
    for i in range(num_images):
        rows.append([_fit(content[i], cell)] + [_fit(stylized[s, i], cell)
                                                 for s in range(num_styles)])
    if crossover is not None:
        for j in range(crossover.shape[1]):
            rows.append([_fit(style_images[j], cell)] + [_fit(crossover[s, j], cell)
                                                         for s in range(num_styles)])
    p = GRID_PADDING
    grid = np.ones([len(rows) * (cell + p) + p, (num_styles + 1) * (cell + p) + p, 3],
                   np.float32)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = p + r * (cell + p), p + c * (cell + p)
            grid[y:y + cell, x:x + cell] = np.clip(image, 0.0, 1.0)
    return grid


def per_style_losses(model, vgg_net, grams, images, loss_config, batch_size=8, label_offset=0,
                     progress=None):
    """Mean losses of every style over the evaluation images.

    Each style's figures are the mean, over all N images, of Magenta's per-image losses
    of the image stylized in that style (the trainer's logged losses are instead the
    mean over one training batch, each example in a random style, at the crop size).

    Args:
      model: StyleTransferNetwork with S styles.
      vgg_net: vgg.VGG16Features or VGG19Features.
      grams: dict {end point: float32 [S, C, C]}, the style dataset's Grams.
      images: float32 [N, H, W, 3] in [0, 1].
      loss_config: config.LossConfig (weights, coefficients, total variation).
      batch_size: images per step.
      label_offset: model style id of the dataset's style 0.
      progress: optional callable(styles done, styles) after each style.

    Returns:
      list (by dataset style) of dicts {Magenta loss name: float}.
    """
    style_objective = objective.Objective(model, vgg_net, grams, loss_config, label_offset)
    num_styles = int(next(iter(grams.values())).shape[0])
    images = tf.convert_to_tensor(images, tf.float32)
    count = int(images.shape[0])
    results = []
    for style in range(num_styles):
        sums = {}
        for start in range(0, count, batch_size):
            chunk = images[start:start + batch_size]
            labels = tf.fill([tf.shape(chunk)[0]], style + label_offset)
            _, terms = style_objective.per_example_losses(chunk, labels)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(tf.reduce_sum(value))
        results.append({name: value / count for name, value in sums.items()})
        if progress is not None:
            progress(style + 1, num_styles)
    return results


def optimum_losses(checkpoint, images, styles, iterations):
    """Per style: mean start and end total loss of N L-BFGS iterations per image.

    Args:
      checkpoint: the model (anything optimize's --init=network accepts); its
        config.json's training loss is the loss minimized.
      images: float32 [N, H, W, 3] in [0, 1].
      styles: model style ids.
      iterations: L-BFGS iterations per image.

    Returns:
      list (by style) of {"optimum_start_total_loss", "optimum_total_loss"} floats.

    Raises:
      EvalError: the model has no training loss to minimize.
    """
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    results = []
    for style in styles:
        starts, ends = [], []
        cfg = config_lib.OptimizeConfig(
            content_image="evaluation image", init=f"network:{checkpoint}:{style}",
            image_size=0, iterations=iterations)
        for image in np.asarray(images, np.float32):
            try:
                result = optimize_lib.optimize(cfg, content=image)
            except optimize_lib.OptimizeError as e:
                raise EvalError(f"--optimum_iterations: {e}") from None
            starts.append(result.report["scales"][0]["start"]["total_loss"])
            ends.append(result.report["scales"][-1]["end"]["total_loss"])
        results.append({"optimum_start_total_loss": float(np.mean(starts)),
                        "optimum_total_loss": float(np.mean(ends))})
    return results


_EVAL = config_lib.EvalConfig()


def evaluate_checkpoint(checkpoint, eval_dir, content_images, style_dataset_file=None,
                        vgg_checkpoint=None, loss_config=None, image_size=_EVAL.image_size,
                        max_images=_EVAL.num_evaluation_images, batch_size=_EVAL.batch_size,
                        grid=_EVAL.style_grid, crossover=_EVAL.style_crossover, log=print,
                        optimum_iterations=_EVAL.optimum_iterations):
    """Evaluates one checkpoint: per-style losses (JSON + TensorBoard) and a style grid.

    Args:
      checkpoint: training dir, native or Magenta checkpoint.
      eval_dir: output folder (events, losses_<step>.json, style_grid_<step>.png;
        losses_<step>_2.json ... when that step was evaluated there before).
      content_images: glob/folder/list of evaluation images.
      style_dataset_file: default: the one in the training config.json.
      vgg_checkpoint: default: the one in the training config.json.
      loss_config: config.LossConfig; default: the training run's.
      image_size: evaluation crop size.
      max_images: at most this many evaluation images.
      batch_size: images per model call.
      grid: write the style grid.
      crossover: add the style images, stylized, to the grid.
      log: callable(str).
      optimum_iterations: > 0 adds, per style, the loss of the per-image optimum
        (`optimum_total_loss`, this many L-BFGS iterations from the network's output
        on its training loss) and `amortization_gap` = total_loss / optimum_total_loss.

    Returns:
      dict with "step", "losses" (per style), "grid" (path or None).

    Raises:
      EvalError: missing inputs or unreadable checkpoint/dataset.
    """
    try:
        fileio.ensure_writable_dir(eval_dir)
    except OSError as e:
        raise EvalError(f"--eval_dir={eval_dir}: cannot be created or written "
                        f"({e.strerror or e})") from None
    try:
        model, model_config = checkpoints.load_model(checkpoint)
        prefix, directory = checkpoints.resolve_checkpoint(checkpoint)
    except checkpoints.CheckpointError as e:
        raise EvalError(str(e)) from None
    where = os.path.join(directory or ".", config_lib.CONFIG_FILENAME)
    try:
        saved = config_lib.read_config_json(directory) if directory else None
        saved_loss, saved_dataset = config_lib.saved_training(saved, where)
        style_dataset_file = style_dataset_file or saved_dataset
        vgg_checkpoint = vgg_checkpoint or saved_loss.get("vgg_checkpoint")
        if vgg_checkpoint is not None and not isinstance(vgg_checkpoint, str):
            raise config_lib.ConfigError(f"{where}: 'train.loss.vgg_checkpoint' is not a "
                                         "string")
        if loss_config is None:
            loss_config = config_lib.saved_loss_config(
                saved_loss, where, vgg_checkpoint=vgg_checkpoint or "")
    except config_lib.ConfigError as e:
        raise EvalError(str(e)) from None
    if not style_dataset_file:
        raise EvalError("no style dataset: pass --style_dataset_file")
    try:
        info = style_dataset.read_style_dataset(style_dataset_file, with_images=True)
        content, paths = pipeline.load_eval_images(content_images, image_size, max_images)
    except (style_dataset.StyleDatasetError, pipeline.DataError) as e:
        raise EvalError(str(e)) from None
    step = _checkpoint_step(prefix)
    offset = model_config.num_styles - info.num_styles
    if offset < 0:
        raise EvalError(f"the style dataset has {info.num_styles} styles, the model only "
                        f"{model_config.num_styles}")
    log(f"evaluating {prefix} (step {step}) on {len(paths)} image(s), "
        f"{model_config.num_styles} style(s)")
    result = {"step": step, "checkpoint": prefix, "images": paths, "losses": []}
    writer = summaries.file_writer(eval_dir)
    os.makedirs(eval_dir, exist_ok=True)
    tag = _unused_tag(eval_dir, step)
    if info.grams is not None and vgg_checkpoint:
        log(f"loading VGG-16 ({vgg_checkpoint}) and the style targets")
        try:
            vgg_net = vgg.get_vgg(vgg_checkpoint, loss_config.vgg_pooling, loss_config.vgg,
                                    objective.needs_conv_end_points(loss_config))
            grams = style_dataset.dataset_grams(vgg_net, info, dict(loss_config.style_weights))
        except (vgg_weights.VGGWeightsError, style_dataset.StyleDatasetError) as e:
            raise EvalError(str(e)) from None
        # The dataset's styles are the model's last ones (add_styles puts them there).
        log(f"losses: each style's mean over the {len(paths)} image(s) at "
            f"{image_size}x{image_size} (training logs the mean of one batch of random "
            "styles at its crop size, so the figures differ)")
        started = time.monotonic()

        def style_done(done, total):
            elapsed = time.monotonic() - started
            log(f"  style {done}/{total} done ({elapsed:.0f} s; about "
                f"{elapsed / done * (total - done):.0f} s left)")

        per_style = per_style_losses(model, vgg_net, grams, content, loss_config,
                                     batch_size, label_offset=offset, progress=style_done)
        result["losses"] = [{"style": offset + s, "name": model_config.style_name(offset + s),
                             **terms} for s, terms in enumerate(per_style)]
        if optimum_iterations > 0:
            log(f"optimizing each image and style for {optimum_iterations} iteration(s)")
            optima = optimum_losses(checkpoint, content, [e["style"] for e in result["losses"]],
                                    optimum_iterations)
            for entry, optimum in zip(result["losses"], optima):
                entry.update(optimum)
                entry["amortization_gap"] = (entry["total_loss"] / optimum["optimum_total_loss"]
                                             if optimum["optimum_total_loss"] > 0 else None)
            result["optimum_iterations"] = int(optimum_iterations)
        with writer.as_default(step=step):
            for entry in result["losses"]:
                for name, value in entry.items():
                    if isinstance(value, float):
                        summaries.write_scalar(f"style_{entry['style']}/{name}", value, step)
        config_lib.write_json_atomic(os.path.join(eval_dir, f"losses_{tag}.json"), result)
    result["grid"] = None
    if grid:
        log(f"stylizing the {len(paths)} image(s) in {model_config.num_styles} style(s) for "
            "the grid")
        stylized = stylize_all(model, content, model_config.num_styles, batch_size)
        headers = None
        cross = None
        if offset == 0:
            headers = list(info.images)
            if crossover:
                style_batch = tf.stack([tf.image.resize(s, [image_size, image_size])
                                        for s in info.images])
                cross = stylize_all(model, style_batch, model_config.num_styles, batch_size)
        picture = style_grid(stylized, content.numpy(), headers, cross)
        path = os.path.join(eval_dir, f"style_grid_{tag}.png")
        images.save_image_atomic(path, picture)
        with writer.as_default(step=step):
            summaries.write_images("style_grid", picture[None], step)
        result["grid"] = path
        log(f"style grid: {path}")
    writer.flush()
    return result


def _unused_tag(eval_dir, step):
    """"<step>", or "<step>_2", "<step>_3", ... when an earlier evaluation of that step
    left losses or a grid in `eval_dir` (another image set, size or dataset: never
    overwrite its results)."""
    tag, n = str(step), 1
    while any(os.path.exists(os.path.join(eval_dir, f"{kind}_{tag}{ext}"))
              for kind, ext in (("losses", ".json"), ("style_grid", ".png"))):
        n += 1
        tag = f"{step}_{n}"
    return tag


def _checkpoint_step(prefix):
    tail = prefix.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def style_grid_from_training(experiment, train_dir, max_images=8, size=None,
                             content_images=None, grid_photos=""):
    """The quickstart's final picture: train_dir/style_grid.png from the latest checkpoint.

    Uses the first `max_images` images of `content_images` (default: the run's content
    images; 8: all 6 of the quickstart's scenes, but not a whole photo folder), then the
    first `max_images` of `grid_photos` (the user's own photos, if given), each centre-
    cropped to `size` (default: the training size, at least 128: the network keeps its
    trained texture scale in pixels, so a 64 px run's strokes show better in 128 px
    cells), and the style dataset's images as the header row.

    Returns:
      The path written.

    Raises:
      pipeline.DataError: `grid_photos` holds no decodable image.
    """
    model, model_config = checkpoints.load_model(train_dir)
    info = style_dataset.read_style_dataset(experiment.data.style_dataset_file,
                                            with_images=True)
    size = size or max(experiment.data.image_size, 128)
    content, _ = pipeline.load_eval_images(content_images or experiment.data.content_images,
                                           size, max_images)
    if grid_photos:
        photos, _ = pipeline.load_eval_images(grid_photos, size, max_images)
        content = tf.concat([content, photos], axis=0)
    stylized = stylize_all(model, content, model_config.num_styles)
    headers = list(info.images) if model_config.num_styles == info.num_styles else None
    path = os.path.join(train_dir, "style_grid.png")
    images.save_image_atomic(path, style_grid(stylized, content.numpy(), headers))
    return path


def watch(checkpoint_dir, interval_secs, evaluate_fn, timeout_secs=None):
    """Evaluates each new checkpoint of a training dir as it appears (Magenta's loop).

    Args:
      checkpoint_dir: the training directory.
      interval_secs: minimum seconds between evaluations.
      evaluate_fn: callable(checkpoint_prefix).
      timeout_secs: stop after this long without a new checkpoint (None: never).

    Returns:
      (evaluated, failed): the number of checkpoints evaluated, and a list of
      (checkpoint prefix, message) for those whose evaluation failed (EvalError).
    """
    evaluated, failed = 0, []
    for prefix in tf.train.checkpoints_iterator(checkpoint_dir, min_interval_secs=interval_secs,
                                                timeout=timeout_secs):
        started = time.monotonic()
        try:
            evaluate_fn(prefix)
        except EvalError as e:
            # Not fatal: the trainer may have deleted this checkpoint meanwhile
            # (max_to_keep), and the next one may evaluate.
            logging.warning("evaluation of %s failed: %s", prefix, e)
            failed.append((prefix, str(e)))
            continue
        evaluated += 1
        logging.info("evaluated %s in %.1f s", prefix, time.monotonic() - started)
    return evaluated, failed
