"""Per-image style transfer by optimizing the pixels (Gatys et al. 2015), as a library.

    result = optimize_lib.optimize(config.OptimizeConfig(
        content_image="photo.jpg", style_images=("starry.jpg",),
        vgg_checkpoint="vgg_16.ckpt", image_size=256, iterations=200))
    result.image    # float32 [H, W, 3] in [0, 1]
    result.history  # one dict of loss terms per iteration

No absl flags here: `magenta_style.optimize` is the command over this module.

How one run goes:
1. Inputs: the content image (or, in doodle mode, a content semantic map alone), the
   style image(s), resized so the output's longer side is `image_size` and each style
   image's longer side is `style_scale` times the output's, at every scale.
2. Targets, per scale: content features at the content layers; a Gram target per
   style layer (the `style_mix` blend of the style images' Grams, as the N-style
   network blends styles), or a `patch_loss.PatchStyleLoss` for style_loss="patch".
   With init=network:CHECKPOINT:STYLE and no style images, the network's own training
   loss: its config's layers, weights and VGG, Grams from its style dataset.
3. One traced function per scale computes the loss terms and the gradient with
   respect to the pixels (VGG forward + backward): it is traced once per scale and
   never again (`trace_count` in the report).
4. The optimizer: scipy's L-BFGS-B with bounds [0, 1] on every pixel (default), or
   Adam in-graph (one traced step per scale; pixels clipped to [0, 1] after each).
   L-BFGS-B: scipy is already installed, handles the bounds exactly (no clipping that
   fights the line search), and its float64 history is what Gatys' reference code
   uses; tensorflow-probability would add a dependency and has no box constraints.
5. Scales, coarse to fine: each scale twice the size of the one before, the last at
   the output size; each starts from the previous result, upsampled bilinearly.
6. The result is the lowest-loss image seen; a NaN/inf loss stops the run and keeps
   the last good image; KeyboardInterrupt stops it and keeps the best image so far.
"""
import dataclasses
import math
import re
import time

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import style_dataset
from magenta_style.media import color
from magenta_style.media import images
from magenta_style.networks import losses
from magenta_style.networks import patch_loss
from magenta_style.networks import vgg

# Keras' Adam, as the trainer's: epsilon is added to the uncorrected sqrt(v), as in TF1's
# AdamOptimizer (the TF1 codes of Magenta and of Gatys' ports).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
LBFGS_MEMORY = 10

# Recipes: layers, weights, normalization and total variation of each paper. Short
# names (conv4_2, relu2_2, conv3) are qualified with the chosen VGG (vgg_16/conv4/conv4_2).
# Gatys: content/style ratio alpha/beta = 1e-3, style layers weighted 1/5 each.
# Johnson: Gram / (C H W); fast-neural-style's weights (content 1, style 5, TV 1e-6).
# Magenta: the project's training defaults.
HED_CONTENT_WEIGHTS = "conv4_2:1.0"
HED_STYLE_WEIGHTS = "relu1_2:1.0,relu2_2:1.0,relu3_3:1.0,relu4_3:1.0"
RECIPES = {
    "gatys": dict(
        content_weights="conv4_2:1.0",
        style_weights=",".join(f"conv{b}_1:{1e3 / 5!r}" for b in range(1, 6)),
        normalization="gatys", tv_weight=0.0),
    "johnson": dict(
        content_weights="relu2_2:1.0",
        style_weights="relu1_2:5.0,relu2_2:5.0,relu3_3:5.0,relu4_3:5.0",
        normalization="johnson", tv_weight=1e-6),
    "magenta": dict(
        content_weights=config_lib.format_layer_weights(losses.DEFAULT_CONTENT_WEIGHTS),
        style_weights=config_lib.format_layer_weights(losses.DEFAULT_STYLE_WEIGHTS),
        normalization="magenta", tv_weight=0.0),
    # HED's VGG (--vgg_checkpoint=hed; the default there): relative terms, so each
    # weight says how much a layer counts whatever its scale; Johnson's style layers;
    # the weights come from the quality sweep in docs/optimize.md (tools/benchmarks/sweep_recipe.py).
    "hed": dict(
        content_weights=HED_CONTENT_WEIGHTS, style_weights=HED_STYLE_WEIGHTS,
        normalization="relative", tv_weight=0.0),
}

# The patch loss's defaults (Champandard 2016): style on conv3_1 and conv4_1
# (sem3_1, sem4_1) at beta 25 each (the low end of the paper's 25..250), content conv4_2
# at alpha 10 with Gatys' 1/2 sum (the paper's E_c), whatever the default recipe is.
PATCH_DEFAULTS = dict(content_weights="conv4_2:10.0", style_weights="conv3_1:25.0,conv4_1:25.0",
                      normalization="gatys")
# Under HED's VGG (the hed recipe) conv3_1 and conv4_1 alone leave pixel noise and
# colour unconstrained (edge-tuned filters): a doodle's regions came out as noise in
# their colours (issue 27). conv2_1 adds the colour and fine strokes; 48 px doodles
# then take each region's strokes (tests/test_hed_modes.py).
HED_PATCH_STYLE_WEIGHTS = "conv2_1:25.0,conv3_1:25.0,conv4_1:25.0"

_SHORT_NAME = re.compile(r"(?<![\w/])(conv|relu)([1-5])_([1-4])(?=\s*:)")
_SHORT_BLOCK = re.compile(r"(?<![\w/])(conv|pool)([1-5])(?=\s*:)")


class OptimizeError(ValueError):
    """A bad input or setting of the optimization; the message names it (one line)."""


@dataclasses.dataclass
class Progress:
    """What `on_iteration` receives after every iteration.

    Attributes:
      scale: 0-based scale index; num_scales: how many.
      size: (h, w) of this scale.
      iteration: iterations done at this scale (1-based); iterations: the budget.
      terms: dict {loss term: float} at the latest evaluation (includes "total_loss").
      elapsed: seconds since this scale started.
    """

    scale: int
    num_scales: int
    size: tuple
    iteration: int
    iterations: int
    terms: dict
    elapsed: float


@dataclasses.dataclass
class OptimizeResult:
    """What optimize returns.

    Attributes:
      image: float32 [H, W, 3] in [0, 1], the best (lowest-loss) image of the last
        scale reached (colour-preserved when asked).
      history: list of dicts, one per iteration: "scale", "iteration" and the loss terms.
      report: the JSON-ready report: "settings", "scales" (one entry per scale, coarse
        to fine: "size", "iterations", "start", "end", ...), "stopped".
      stopped: None (ran every iteration), "interrupted" or "non-finite loss at scale
        S iteration I".
      early_stop: None, or why the optimizer ended a scale before its iterations
        without failing (L-BFGS-B found nothing left to lower), one line per scale
        joined by "; "; the report's "stopped" holds it too.
    """

    image: np.ndarray
    history: list
    report: dict
    stopped: object = None
    early_stop: object = None


def qualify_layer_weights(text, architecture):
    """Parses `end_point:weight` text, with short layer names, into full end points.

    `conv4_2`/`relu4_2` become `<architecture>/conv4/conv4_2`, `conv3`/`pool3` become
    `<architecture>/conv3`; full names pass through. Parsing and validation are
    config_lib.parse_layer_weights'.

    Raises:
      OptimizeError: malformed text, an unknown layer, or a layer of the other VGG.
    """
    qualified = _SHORT_NAME.sub(
        lambda m: f"{architecture}/conv{m.group(2)}/conv{m.group(2)}_{m.group(3)}", text)
    qualified = _SHORT_BLOCK.sub(lambda m: f"{architecture}/{m.group(1)}{m.group(2)}",
                                 qualified)
    try:
        weights = config_lib.parse_layer_weights(qualified, "layer weights")
    except config_lib.LossWeightsError as e:
        raise OptimizeError(str(e)) from None
    known = set(vgg.end_points(architecture, conv_end_points=True))
    for name in weights:
        if name not in known:
            raise OptimizeError(f"layer {name} is not a layer of {architecture} (use --vgg)")
    return weights


def resolved_losses(cfg, architecture=None):
    """The (content weights, style weights, normalization, tv weight) a config runs with.

    Explicit config fields win over the recipe (or, for style_loss="patch", the patch
    loss's defaults); short layer names are qualified with the VGG architecture. Every
    style weight is multiplied by cfg.style_strength.
    """
    architecture = architecture or cfg.vgg
    recipe = dict(RECIPES[cfg.recipe])
    if cfg.style_loss == "patch":
        recipe.update(PATCH_DEFAULTS)
        if cfg.recipe == "hed":
            recipe["style_weights"] = HED_PATCH_STYLE_WEIGHTS

    def weights(field, default_text):
        given = getattr(cfg, field)
        if given is None:
            return qualify_layer_weights(default_text, architecture)
        return qualify_layer_weights(",".join(f"{n}:{w!r}" for n, w in given), architecture)

    content = weights("content_weights", recipe["content_weights"])
    style = {name: cfg.style_strength * weight for name, weight in
             weights("style_weights", recipe["style_weights"]).items()}
    if cfg.is_doodle():
        content = {}  # Doodle mode: the map alone says what goes where.
    normalization = cfg.normalization or recipe["normalization"]
    tv = recipe["tv_weight"] if cfg.tv_weight is None else float(cfg.tv_weight)
    return content, style, normalization, tv


def output_size(height, width, image_size):
    """(h, w) with the longer side `image_size` (0: unchanged), aspect ratio kept."""
    if not image_size:
        return height, width
    scale = image_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def scale_sizes(height, width, scales):
    """Sizes of the scales, coarse to fine: each twice the one before, the last (h, w)."""
    return [(max(1, round(height / 2 ** k)), max(1, round(width / 2 ** k)))
            for k in range(scales - 1, -1, -1)]


def _min_side(names):
    """Smallest input side for which every named end point is non-empty."""
    need = 1
    for name in names:
        block = int(re.search(r"(?:conv|pool)([1-5])", name.split("/")[1]).group(1))
        pools = block if "/pool" in name else block - 1
        need = max(need, 2 ** pools)
    return need


def _resize(image, size):
    """float32 [H, W, C] -> [h, w, C], area-averaged when shrinking, bilinear otherwise."""
    image = tf.convert_to_tensor(image, tf.float32)
    shrinking = size[0] < image.shape[0] or size[1] < image.shape[1]
    method = "area" if shrinking else "bilinear"
    return tf.clip_by_value(tf.image.resize(image, size, method=method), 0.0, 255.0).numpy()


def _load(path, what, max_pixels):
    try:
        rgb, _ = images.load_image(path, max_pixels=max_pixels)
    except images.ImageError as e:
        raise OptimizeError(f"{what}: {e}") from None
    return rgb


@dataclasses.dataclass
class _Objective:
    """What the loss of one run is made of (before any scale is chosen)."""

    content_weights: dict
    style_weights: dict
    normalization: str
    tv_weight: float
    style_images: list       # float32 [H, W, 3] each (gram or patch), or []
    mix: list                # blend weights, sum 1
    fixed_grams: dict = None  # {end point: [C, C]} from a style dataset (network init)
    dataset: tuple = None     # (StyleDatasetInfo, row) when fixed_grams must be computed
    style_coefficient: float = 1.0
    description: str = "command"


def _network_objective(cfg, path, style):
    """The loss a fast network was trained with: (objective, model, style id, vgg settings)."""
    from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import checkpoints  # pylint: disable=import-outside-toplevel
    try:
        model, model_config = stylizer.load(path)
        if stylizer.is_saved_model(path):
            saved = stylizer.read_metadata(path)
        else:
            _, directory = checkpoints.resolve_checkpoint(path)
            saved = config_lib.read_config_json(directory) or {}
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        raise OptimizeError(f"init network: {e}") from None
    if style.isdigit():
        style_id = int(style)
    elif style in model_config.style_names:
        style_id = model_config.style_names.index(style)
    else:
        raise OptimizeError(f"init network: {path} has no style {style!r} (styles 0.."
                            f"{model_config.num_styles - 1}"
                            + (f": {', '.join(model_config.style_names)})"
                               if model_config.style_names else ")"))
    if not 0 <= style_id < model_config.num_styles:
        raise OptimizeError(f"init network: style {style_id} is out of range 0.."
                            f"{model_config.num_styles - 1}")
    if cfg.style_images:
        return None, model, style_id, None
    if not saved.get("train") if isinstance(saved, dict) else True:
        raise OptimizeError(
            f"init network: {path} has no training config (config.json 'train'), so its "
            "loss is unknown; give --style_images to use this command's loss")
    try:
        saved_loss, dataset_file = config_lib.saved_training(saved, path)
        loss_config = config_lib.saved_loss_config(saved_loss, path)
        if not dataset_file:
            raise config_lib.ConfigError(f"{path}: 'train.data.style_dataset_file' is missing")
        info = style_dataset.read_style_dataset(dataset_file, with_images=True)
    except (config_lib.ConfigError, style_dataset.StyleDatasetError) as e:
        raise OptimizeError(f"init network: cannot read the training loss of {path}: "
                            f"{' '.join(str(e).split())}") from None
    if info.grams is None:
        raise OptimizeError(f"init network: the style dataset of {path} has no Gram matrices")
    row = style_id - (model_config.num_styles - info.num_styles)
    if row < 0:
        raise OptimizeError(f"init network: style {style_id} is not in the training style "
                            "dataset; give --style_images")
    coefficient = (loss_config.style_coefficients[row] if loss_config.style_coefficients
                   else 1.0)
    objective = _Objective(
        content_weights=dict(loss_config.content_weights),
        style_weights=dict(loss_config.style_weights), normalization="magenta",
        tv_weight=loss_config.total_variation_weight, style_images=[], mix=[],
        fixed_grams={name: np.asarray(grams[row], np.float32)
                     for name, grams in info.grams.items()},
        style_coefficient=float(coefficient), description=f"training loss of {path}",
        dataset=(info, row))
    vgg_settings = (loss_config.vgg_checkpoint, loss_config.vgg_pooling,
                    getattr(loss_config, "vgg", "vgg_16"))
    return objective, model, style_id, vgg_settings


def _standardize_terms(terms):
    """{name: tensor [1] or scalar} -> {name: float}."""
    return {name: float(np.asarray(value).reshape(-1)[0]) for name, value in terms.items()}


class _ScaleLoss:
    """The traced loss + gradient of one scale: f(x [1, h, w, 3]) -> (total, terms, grad)."""

    def __init__(self, vgg_net, objective, size, content, style_loss_obj, content_map,
                 jit_compile, counter):
        self.size = size
        cw, sw = objective.content_weights, objective.style_weights
        order = vgg.end_points(vgg_net.architecture, conv_end_points=True)
        up_to = max(list(cw) + list(sw), key=order.index)

        def features_of(x):
            return vgg_net(x, up_to=up_to)

        x_spec = tf.TensorSpec([1, size[0], size[1], 3], tf.float32)
        content_targets = {}
        if cw:
            features = features_of(tf.constant(content[None]))
            content_targets = {name: tf.constant(features[name]) for name in cw}
        grams = {}
        if style_loss_obj is None and sw:
            if objective.fixed_grams is not None:
                grams = {name: tf.constant(objective.fixed_grams[name][None]) for name in sw}
            else:
                for image, weight in zip(objective.style_images, objective.mix):
                    features = features_of(tf.constant(image[None]))
                    for name in sw:
                        gram = weight * losses.gram_matrix(features[name])
                        grams[name] = gram if name not in grams else grams[name] + gram
        coefficients = tf.constant([objective.style_coefficient], tf.float32)
        tv_weight = objective.tv_weight
        normalization = objective.normalization
        content_map = None if content_map is None else tf.constant(content_map)

        def loss_terms(x):
            counter[0] += 1  # Python side effect: runs at trace time only.
            features = features_of(x)
            total, terms = losses.content_loss(content_targets, features, cw, normalization) \
                if cw else (tf.zeros([1]), {"total_content_loss": tf.zeros([1])})
            if style_loss_obj is not None:
                if hasattr(style_loss_obj, "split_call"):
                    # The map mismatch has no gradient; reported apart, not minimized
                    # (patch_loss.PatchStyleLoss.split_call says why).
                    style_total, per_layer, semantic = style_loss_obj.split_call(
                        features, content_map)
                    terms["patch_semantic_mismatch"] = tf.reshape(
                        tf.cast(semantic, tf.float32), [1])
                else:
                    style_total, per_layer = style_loss_obj(features, content_map)
                style_total = tf.reshape(tf.cast(style_total, tf.float32), [1])
                terms.update({f"patch_loss/{name}": tf.reshape(value, [1])
                              for name, value in per_layer.items()})
                terms["total_style_loss"] = style_total
            elif sw:
                style_total, style_terms = losses.style_loss(
                    grams, features, sw, coefficients, normalization)
                terms.update(style_terms)
            else:
                style_total = tf.zeros([1])
                terms["total_style_loss"] = style_total
            total = total + style_total
            tv = losses.total_variation_loss(x)
            terms["total_variation_loss"] = tv
            terms["weighted_total_variation_loss"] = tv_weight * tv
            total = total + tv_weight * tv
            terms["total_loss"] = total
            return tf.reduce_sum(total), terms

        @tf.function(input_signature=[x_spec], jit_compile=jit_compile or None)
        def value_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total, terms = loss_terms(x)
            return total, terms, tape.gradient(total, x)

        self.value_and_gradient = value_and_gradient
        self.loss_terms = loss_terms
        self.jit_compile = jit_compile

    def evaluate(self, x):
        """(total float, terms {name: float}, gradient float32 np [1, h, w, 3])."""
        total, terms, grad = self.value_and_gradient(tf.constant(x, tf.float32))
        return float(total), _standardize_terms(terms), grad.numpy()


class _NonFinite(Exception):
    pass


class _Best:
    """Remembers the lowest-loss finite image evaluated."""

    def __init__(self):
        self.loss = math.inf
        self.image = None
        self.terms = None

    def offer(self, loss, image, terms):
        if loss < self.loss:
            self.loss, self.image, self.terms = loss, np.array(image, np.float32), terms


def _run_lbfgs(scale_loss, x0, iterations, on_step):
    """L-BFGS-B over the pixels in [0, 1]. Returns (best, iterations run, stopped)."""
    shape = x0.shape
    best = _Best()
    state = {"iteration": 0, "terms": None}

    def fun(flat):
        x = flat.reshape(shape).astype(np.float32)
        total, terms, grad = scale_loss.evaluate(x)
        if not (math.isfinite(total) and np.all(np.isfinite(grad))):
            raise _NonFinite()
        best.offer(total, x, terms)
        state["terms"] = terms
        return total, grad.astype(np.float64).ravel()

    def callback(_):
        state["iteration"] += 1
        on_step(state["iteration"], state["terms"], best)

    stopped = ended = None
    n = int(np.prod(shape))
    try:
        result = scipy.optimize.minimize(
            fun, x0.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(np.zeros(n), np.ones(n)), callback=callback,
            # ftol = gtol = 0: run the iterations asked for instead of stopping on a
            # relative-change test calibrated for other loss scales.
            options={"maxiter": iterations, "maxfun": 20 * iterations + 20,
                     "maxcor": LBFGS_MEMORY, "ftol": 0.0, "gtol": 0.0})
        if state["iteration"] < iterations:
            ended = lbfgs_stop_reason(result.message, state["iteration"], iterations)
    except _NonFinite:
        stopped = f"non-finite loss at iteration {state['iteration'] + 1}"
    except KeyboardInterrupt:
        stopped = "interrupted"
    return best, state["iteration"], stopped, ended


# What L-BFGS-B's stop messages mean here (ftol = gtol = 0, so only these end a run
# before its iterations).
_LBFGS_REASONS = (
    ("PROJECTED", "the gradient is zero within the [0, 1] pixel bounds: no pixel change "
                  "lowers the loss"),
    ("ABNORMAL", "the line search found no lower loss (the loss is flat at float32 "
                 "precision around this image)"),
    ("EVALUATIONS", "it used its budget of loss evaluations"),
)


def lbfgs_stop_reason(message, done, iterations):
    """One line saying why L-BFGS-B ended after `done` of `iterations` iterations."""
    message = str(message)
    meaning = next((text for key, text in _LBFGS_REASONS if key in message.upper()
                    .replace("_", " ").replace("NO. OF F,G", "EVALUATIONS")), None)
    reason = f"{meaning} ({message})" if meaning else message
    return f"L-BFGS-B stopped after {done} of {iterations} iterations: {reason}"


def _run_adam(scale_loss, x0, iterations, learning_rate, on_step):
    """In-graph Adam on the pixels, clipped to [0, 1]. Returns (best, iterations, stopped)."""
    image = tf.Variable(x0, dtype=tf.float32)
    optimizer = keras.optimizers.Adam(float(learning_rate), beta_1=ADAM_BETAS[0],
                                      beta_2=ADAM_BETAS[1], epsilon=ADAM_EPSILON)
    optimizer.build([image])

    @tf.function(jit_compile=scale_loss.jit_compile or None)
    def adam_step():
        with tf.GradientTape() as tape:
            tape.watch(image)
            total, terms = scale_loss.loss_terms(tf.convert_to_tensor(image))
        grad = tape.gradient(total, image)
        finite = tf.reduce_all(tf.math.is_finite(grad)) & tf.math.is_finite(total)
        before = tf.identity(image)
        optimizer.apply([grad], [image])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return total, terms, before, finite

    best = _Best()
    stopped = None
    done = 0
    try:
        for done in range(1, iterations + 1):
            total, terms, before, finite = adam_step()
            total = float(total)
            if not bool(finite) or not math.isfinite(total):
                stopped = f"non-finite loss at iteration {done}"
                done -= 1
                break
            terms = _standardize_terms(terms)
            best.offer(total, before.numpy(), terms)
            on_step(done, terms, best)
    except KeyboardInterrupt:
        stopped = "interrupted"
    # The last update's result was never evaluated; evaluate it once so it can win.
    if stopped is None:
        total, terms, _ = scale_loss.evaluate(image.numpy())
        if math.isfinite(total):
            best.offer(total, image.numpy(), terms)
    return best, done, stopped, None  # Adam runs every iteration unless it fails.


def _noise(size, seed):
    rng = np.random.RandomState(seed)
    return rng.uniform(0.0, 1.0, size=(size[0], size[1], 3)).astype(np.float32)


def optimize(cfg, content=None, styles=None, vgg_net=None, on_iteration=None,
             on_snapshot=None, start_from_content=False):
    """Runs one optimization.

    Args:
      cfg: config.OptimizeConfig. Its file paths are read unless arrays are given.
      content: optional float32 [H, W, 3] in [0, 1] instead of cfg.content_image.
      styles: optional list of float32 [H, W, 3] in [0, 1] instead of cfg.style_images.
      vgg_net: optional vgg.VGG16Features or VGG19Features built with conv_end_points=True and the
        config's architecture (tests pass one to save the build); default: built
        from cfg.vgg_checkpoint.
      on_iteration: optional callable(Progress) after every iteration.
      on_snapshot: optional callable(image float32 [h, w, 3], scale, iteration), every
        cfg.save_every iterations.
      start_from_content: with init=network:..., keep the network's loss but start
        from the content image (the baseline that shows what the network's head start
        is worth; see iterations_to_reach).

    Returns:
      OptimizeResult.

    Raises:
      OptimizeError: a missing/corrupt image or map, a style mix that does not match,
        an unknown layer, a size over the pixel cap or too small for the layers.
      vgg_weights.VGGWeightsError: the VGG weights cannot be read.
    """
    if cfg.style_loss == "patch" and patch_loss is None:
        # Kept only because tests/test_optimize.py pins this message (the module is
        # always there now: the import at the top no longer has a fallback).
        raise OptimizeError("style_loss=patch needs magenta_style.networks.patch_loss, which "
                            "this installation lacks")
    inputs = _read_inputs(cfg, content, styles)
    network = config_lib.parse_network_init(cfg.init)
    objective, network_model, style_id, loss_vgg = _build_objective(cfg, network,
                                                                    inputs.styles)
    inputs = _read_style_map(cfg, inputs)
    sizes = _scale_sizes(cfg, inputs, objective)
    vgg_net, objective = _loss_network(vgg_net, objective, loss_vgg)
    current = _start_image(cfg, inputs, sizes[0], network, network_model, style_id,
                           start_from_content)
    scales = _run_scales(cfg, inputs, objective, vgg_net, loss_vgg.architecture, sizes,
                         current, on_iteration, on_snapshot)
    image = _final_image(cfg, inputs, scales.image)
    report = {
        "settings": cfg.to_dict(),
        "loss": {"source": objective.description,
                 "content_weights": objective.content_weights,
                 "style_weights": objective.style_weights,
                 "normalization": objective.normalization,
                 "tv_weight": objective.tv_weight, "vgg": loss_vgg.architecture,
                 "vgg_checkpoint": loss_vgg.weights},
        "output_size": [int(inputs.height), int(inputs.width)],
        "scales": scales.report,
        "trace_count": scales.trace_count,
        # Why the run ended before its iterations: a failure, an interrupt, or the
        # optimizer's own stop (null: every iteration ran).
        "stopped": scales.stopped or scales.early_stop,
    }
    return OptimizeResult(image=image, history=scales.history, report=report,
                          stopped=scales.stopped, early_stop=scales.early_stop)


# --- The phases of optimize() ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The images of a run, read and checked.

    Attributes:
      content: float32 [H, W, 3] in [0, 1], or None (a doodle).
      styles: list of float32 [h, w, 3] in [0, 1].
      content_map: the content semantic map float32 [1, H, W, M] in 0..255, or None.
      style_map: the style semantic map float32 [1, h, w, M], or None.
      height, width: the output size, pixels.
    """

    content: np.ndarray
    styles: list
    content_map: np.ndarray
    height: int
    width: int
    style_map: np.ndarray = None


@dataclasses.dataclass(frozen=True)
class _LossVgg:
    """The loss network's weights, pooling and architecture (the network's own, for
    init=network:...)."""

    weights: str
    pooling: str
    architecture: str


@dataclasses.dataclass(frozen=True)
class _Scales:
    """What the scales loop ends with: the last best image [h, w, 3], the per-iteration
    history, the per-scale report entries, the loss traces made, why it stopped (a
    failure or an interrupt) and why the optimizer ended scales early (or None)."""

    image: np.ndarray
    history: list
    report: list
    trace_count: int
    stopped: str
    early_stop: str = None


def _read_inputs(cfg, content, styles):
    """Phase 1: the content, styles and content map, and the output size (_Inputs)."""
    content_map = None
    height = width = None
    for path, what in ((cfg.style_semantic_map, "style"), (cfg.content_semantic_map, "content")):
        size = images.map_file_size(path) if path else None
        if size is not None and size[0] * size[1] > cfg.max_pixels:
            # Before reading it: a map is decoded (or one-hot encoded) at its own size.
            raise OptimizeError(f"{what} semantic map {path} is {size[1]}x{size[0]}, above the "
                                f"pixel cap of {cfg.max_pixels} (--max_pixels)")
    # Inputs are resized before the optimization: a photo larger than the output cap
    # is fine, within the loader's own decoding cap.
    input_cap = max(cfg.max_pixels, images.DEFAULT_MAX_PIXELS)
    if content is None and cfg.content_image:
        content = _load(cfg.content_image, "content image", input_cap)
    if styles is None:
        styles = [_load(path, "style image", input_cap) for path in cfg.style_images]
    styles = [np.asarray(s, np.float32) for s in styles]
    if cfg.style_mix and len(cfg.style_mix) != len(styles):
        raise OptimizeError(f"style mix has {len(cfg.style_mix)} weights for {len(styles)} "
                            "style image(s)")
    if content is not None:
        content = np.asarray(content, np.float32)
        height, width = output_size(content.shape[0], content.shape[1], cfg.image_size)
    if cfg.content_semantic_map:
        hw = (content.shape[0], content.shape[1]) if content is not None else None
        content_map = _load_map(cfg.content_semantic_map, hw)
        if content is None:
            height, width = output_size(content_map.shape[1], content_map.shape[2],
                                        cfg.image_size)
    if height * width > cfg.max_pixels:
        raise OptimizeError(f"output size {width}x{height} ({height * width} pixels) is over "
                            f"the pixel cap of {cfg.max_pixels} (lower --image_size)")
    return _Inputs(content=content, styles=styles, content_map=content_map, height=height,
                   width=width)


def _build_objective(cfg, network, styles):
    """Phase 2: the loss, the command's or the network's own training loss.

    Returns:
      (_Objective, the network model or None, its style id or None, _LossVgg).
    """
    network_model = style_id = objective = None
    loss_vgg = _LossVgg(cfg.vgg_checkpoint, cfg.vgg_pooling, cfg.vgg)
    if network is not None:
        objective, network_model, style_id, vgg_settings = _network_objective(cfg, *network)
        if vgg_settings is not None:
            weights, pooling, architecture = vgg_settings
            loss_vgg = _LossVgg(weights, pooling, architecture)
    if objective is None:
        content_w, style_w, normalization, tv_weight = resolved_losses(cfg,
                                                                       loss_vgg.architecture)
        mix = list(cfg.style_mix) or [1.0] * len(styles)
        mix = [w / sum(mix) for w in mix]
        objective = _Objective(content_w, style_w, normalization, tv_weight, styles, mix)
    if not (objective.content_weights or objective.style_weights):
        raise OptimizeError("no content and no style layers: nothing to optimize")
    return objective, network_model, style_id, loss_vgg


def _read_style_map(cfg, inputs):
    """Phase 3: the patch loss's style semantic map, read with the content map (so both
    get the same channels); `inputs` with both maps."""
    style_map, content_map = None, inputs.content_map
    if cfg.style_loss == "patch" and cfg.style_semantic_map:
        style_hw = (inputs.styles[0].shape[0], inputs.styles[0].shape[1])
        if content_map is None:
            style_map = _load_map(cfg.style_semantic_map, style_hw)
        else:
            # Read together: label maps get one channel per label of both (a doodle may
            # use fewer labels), a grey map next to a colour one is read as colour.
            content = inputs.content
            try:
                style_map, content_map = (
                    np.asarray(m, np.float32) for m in patch_loss.load_semantic_maps(
                        cfg.style_semantic_map, style_hw, cfg.content_semantic_map,
                        None if content is None else content.shape[:2],
                        style_name=(cfg.style_images or ("the style image",))[0],
                        content_name=cfg.content_image or "the content image"))
            except patch_loss.SemanticMapError as e:
                raise OptimizeError(str(e)) from None
        if content_map is not None and style_map.shape[-1] != content_map.shape[-1]:
            raise OptimizeError(
                f"style semantic map {cfg.style_semantic_map} has {style_map.shape[-1]} "
                f"channels, content semantic map {cfg.content_semantic_map} has "
                f"{content_map.shape[-1]}")
    if cfg.style_loss == "patch" and (style_map is None) != (content_map is None):
        raise OptimizeError(
            "the patch loss needs both semantic maps (--style_semantic_map and "
            "--content_semantic_map) or neither; got only "
            + ("the style's" if style_map is not None else "the content's"))
    return dataclasses.replace(inputs, style_map=style_map, content_map=content_map)


def _scale_sizes(cfg, inputs, objective):
    """Phase 4: the (height, width) of every scale, coarse to fine, checked against the
    deepest layer's minimum size."""
    sizes = scale_sizes(inputs.height, inputs.width, cfg.scales)
    needed = _min_side(list(objective.content_weights) + list(objective.style_weights))
    if min(sizes[0]) < needed:
        raise OptimizeError(
            f"the first scale is {sizes[0][1]}x{sizes[0][0]} but the deepest layer needs "
            f"at least {needed} pixels a side: raise --image_size or lower --scales")
    _check_style_sizes(cfg, objective, sizes)
    return sizes


def _loss_network(vgg_net, objective, loss_vgg):
    """Phase 5: the VGG (built unless given) and the objective with its Gram targets.

    Returns:
      (vgg_net, _Objective): a network's dataset Grams are recomputed when it was
      trained with VGG-19 or per-convolution layers, as the trainer computes them.
    """
    if vgg_net is None:
        vgg_net = vgg.get_vgg(loss_vgg.weights, loss_vgg.pooling, loss_vgg.architecture,
                                conv_end_points=True)
    if getattr(vgg_net, "architecture", "vgg_16") != loss_vgg.architecture:
        raise OptimizeError(f"the VGG given is {vgg_net.architecture}, the losses need "
                            f"{loss_vgg.architecture}")
    if objective.dataset is not None and not set(objective.style_weights) <= set(
            objective.fixed_grams):
        info, row = objective.dataset
        grams = style_dataset.dataset_grams(vgg_net, info, objective.style_weights)
        objective = dataclasses.replace(
            objective, fixed_grams={name: grams[name][row] for name in grams})
    return vgg_net, objective


def _start_image(cfg, inputs, first_size, network, network_model, style_id,
                 start_from_content):
    """Phase 6: the starting image at the first scale, float32 [h, w, 3] in [0, 1]."""
    content, size = inputs.content, (inputs.height, inputs.width)
    init = cfg.init
    if content is None and init == "content":
        init = "noise"  # Doodle mode: nothing to start from but noise.
    if network is not None and not start_from_content:
        from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
        start = stylizer.call_model(network_model, tf.constant(_resize(content, size)[None]),
                                    tf.constant([style_id]))
        start = np.asarray(start, np.float32)[0]
        if not np.all(np.isfinite(start)):
            # Checked now, not after the whole optimization: NaN in the start image makes
            # every loss NaN.
            raise OptimizeError(f"init network: {cfg.init[len(config_lib.NETWORK_INIT_PREFIX):]}"
                                " gives non-finite pixels (NaN or infinite weights in the "
                                "checkpoint?)")
    elif init == "content" or network is not None:
        start = _resize(content, size)
    elif init == "style":
        start = (_resize(inputs.styles[0], size) if inputs.styles
                 else _noise(first_size, cfg.seed))
    else:
        start = _noise(first_size, cfg.seed)
    return _resize(start, first_size) if start.shape[:2] != tuple(first_size) else start


def _run_scales(cfg, inputs, objective, vgg_net, architecture, sizes, current,
                on_iteration, on_snapshot):
    """Phase 7: optimizes scale after scale, each starting from the last one's best
    image upsampled; stops at the first scale that is interrupted or not finite."""
    counter = [0]
    history = []
    report = []
    stopped = None
    early_stops = []
    for index, size in enumerate(sizes):
        if index:
            current = np.clip(_resize(current, size), 0.0, 1.0)
        scale_loss, patch = _scale_loss(cfg, inputs, objective, vgg_net, architecture,
                                        index, sizes, counter)
        _, start_terms, _ = scale_loss.evaluate(current[None])
        began = time.perf_counter()

        def on_step(iteration, terms, best, index=index, size=size, began=began):
            history.append({"scale": index, "iteration": iteration, **terms})
            if on_iteration is not None:
                on_iteration(Progress(index, len(sizes), tuple(size), iteration,
                                      cfg.iterations, terms, time.perf_counter() - began))
            if on_snapshot is not None and cfg.save_every and iteration % cfg.save_every == 0:
                on_snapshot(best.image[0], index, iteration)

        if cfg.optimizer == "lbfgs":
            best, done, stopped, ended = _run_lbfgs(scale_loss, current[None],
                                                    cfg.iterations, on_step)
        else:
            best, done, stopped, ended = _run_adam(scale_loss, current[None], cfg.iterations,
                                                   cfg.learning_rate, on_step)
        if ended is not None:
            early_stops.append(f"scale {index + 1} of {len(sizes)}: {ended}")
        if best.image is not None:
            current = best.image[0]
        entry = {"size": [int(size[0]), int(size[1])], "iterations": int(done),
                 "start": start_terms,
                 "end": best.terms if best.terms is not None else start_terms,
                 "seconds": round(time.perf_counter() - began, 3)}
        if getattr(patch, "gammas_used", None):
            entry["semantic_weight"] = patch.gammas_used
        if patch is not None and hasattr(patch, "usage"):
            entry["distinct_style_patches"] = {
                name: int(count) for name, count in patch.usage().items()}
        report.append(entry)
        if stopped is not None:
            stopped = f"{stopped} (scale {index + 1} of {len(sizes)})" \
                if stopped != "interrupted" else stopped
            break
    return _Scales(image=current, history=history, report=report, trace_count=counter[0],
                   stopped=stopped, early_stop="; ".join(early_stops) or None)


def _scale_loss(cfg, inputs, objective, vgg_net, architecture, index, sizes, counter):
    """The loss at scale `index`: (_ScaleLoss, its PatchStyleLoss or None)."""
    size = sizes[index]
    content_s = None if inputs.content is None else _resize(inputs.content, size)
    longer = round(cfg.style_scale * max(size))
    styles_s = [_resize(s, output_size(s.shape[0], s.shape[1], max(longer, 1)))
                for s in objective.style_images]
    scale_objective = dataclasses.replace(objective, style_images=styles_s)
    patch = None
    content_map = None
    if inputs.content_map is not None:
        content_map = _resize(inputs.content_map[0], size)[None]
    if cfg.style_loss == "patch":
        style_features = vgg_net(tf.constant(styles_s[0][None]),
                                 up_to=max(objective.style_weights,
                                           key=vgg.end_points(architecture, True).index))
        style_features = {name: style_features[name] for name in objective.style_weights}
        style_map_s = (None if inputs.style_map is None else
                       _resize(inputs.style_map[0], styles_s[0].shape[:2])[None])
        gamma = cfg.semantic_weight
        # Default: a multiple of the range-equalizing gamma, per layer; a patch module
        # without it (a stand-in) gets the paper's absolute 50.
        default_gamma = getattr(patch_loss, "default_semantic_weight", None)
        if gamma is None:
            gamma = default_gamma(style_features, style_map_s) if default_gamma else 50.0
        try:
            patch = patch_loss.PatchStyleLoss(style_features, objective.style_weights,
                                              style_map_s, gamma, cfg.patch_size)
            if isinstance(gamma, dict):
                patch.gammas_used = {name: float(g) for name, g in gamma.items()}
        except ValueError as e:  # A style layer smaller than a patch at this scale.
            raise OptimizeError(f"scale {index + 1} of {len(sizes)} ({size[1]}x{size[0]}): "
                                f"{e} (or fewer --scales)") from None
    return _ScaleLoss(vgg_net, scale_objective, size, content_s, patch, content_map,
                      cfg.jit_compile, counter), patch


def _final_image(cfg, inputs, current):
    """Phase 8: the result at the output size, colour-preserved when asked."""
    size = (inputs.height, inputs.width)
    image = np.clip(current, 0.0, 1.0).astype(np.float32)
    if tuple(image.shape[:2]) != size:
        image = np.clip(_resize(image, size), 0.0, 1.0)
    if cfg.preserve_colors and inputs.content is not None:
        image = color.preserve_colors(_resize(inputs.content, size), image).numpy()
    return image


def style_size(style_hw, output_hw, style_scale):
    """(h, w) of a style image at one scale: its longer side style_scale times the
    output's longer side, aspect kept (floats, unrounded, so that a huge or infinite
    --style_scale is measured before anything is resized)."""
    factor = style_scale * max(output_hw) / max(style_hw)
    return style_hw[0] * factor, style_hw[1] * factor


def _check_style_sizes(cfg, objective, sizes):
    """Refuses, before any work, style images that --style_scale makes larger than the
    pixel cap at the last scale, or too small for the style layers at the first scale
    (an empty feature map gives a NaN Gram: the run would stop at once and write the
    untouched photo)."""
    if not objective.style_images:
        return
    names = list(cfg.style_images) or [f"style image {k + 1}"
                                       for k in range(len(objective.style_images))]
    # One feature cell per style layer (a patch loss's larger need, a whole patch, is
    # checked where its loss is built: _scale_loss).
    need = _min_side(list(objective.style_weights))
    for name, image in zip(names, objective.style_images):
        hw = image.shape[:2]
        largest = style_size(hw, sizes[-1], cfg.style_scale)
        pixels = largest[0] * largest[1]
        if not pixels <= cfg.max_pixels:  # Also NaN and infinity.
            raise OptimizeError(
                f"--style_scale={cfg.style_scale:g} makes the style image {name} "
                f"{largest[1]:.0f}x{largest[0]:.0f} ({pixels:.3g} pixels) at the output "
                f"size, over the pixel cap of {cfg.max_pixels}: lower --style_scale")
        smallest = output_size(hw[0], hw[1], max(1, round(cfg.style_scale * max(sizes[0]))))
        if min(smallest) < need:
            raise OptimizeError(
                f"the style image {name} is {smallest[1]}x{smallest[0]} at the first scale "
                f"(--style_scale={cfg.style_scale:g}), but its deepest style layer needs at "
                f"least {need} pixels a side: raise --style_scale or --image_size, lower "
                "--scales, or use a less elongated style image")


def _load_map(path, image_hw):
    try:
        return np.asarray(patch_loss.load_semantic_map(path, image_hw), np.float32)
    except patch_loss.SemanticMapError as e:
        raise OptimizeError(str(e)) from None


def iterations_to_reach(history, loss, scale=None):
    """The first iteration whose total loss is <= `loss` (None if never).

    Args:
      history: OptimizeResult.history.
      loss: float target total loss.
      scale: only count entries of this scale (default: all, in order).
    """
    count = 0
    for entry in history:
        if scale is not None and entry["scale"] != scale:
            continue
        count += 1
        if entry["total_loss"] <= loss:
            return count
    return None
