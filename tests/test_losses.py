"""Tests for magenta_style.networks.losses: formulas, reductions, weights parsing, Magenta parity."""
import json

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style.data import style_dataset
from magenta_style.networks import losses

CHANNELS = {"vgg_16/conv1": 4, "vgg_16/conv2": 6, "vgg_16/conv3": 8, "vgg_16/conv4": 5}


def _features(batch, seed, size=6):
    rng = np.random.default_rng(seed)
    return {name: tf.constant(rng.normal(size=(batch, size, size + 1, c)).astype(np.float32))
            for name, c in CHANNELS.items()}


def _np_gram(x):
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c).astype(np.float64)
    return np.einsum("bpc,bpd->bcd", flat, flat) / (h * w)


def _png(path):
    return np.asarray(Image.open(path), np.float32) / 255.0


# ------------------------------------------------------------------ Magenta parity


def test_losses_match_magenta(seed7_vgg, fixtures_dir):
    base = fixtures_dir / "magenta" / "vggloss_s7"
    expected = json.loads((base / "expected_losses.json").read_text())
    assert expected["content_weights"] == losses.DEFAULT_CONTENT_WEIGHTS
    assert expected["style_weights"] == losses.DEFAULT_STYLE_WEIGHTS
    content = _png(base / "content.png")[None]
    style = _png(base / "style.png")[None]
    pastiche = np.load(base / "pastiche.npy")[None]
    style_grams = {name: losses.gram_matrix(f) for name, f in seed7_vgg(style).items()}
    total, terms = losses.total_loss(
        seed7_vgg(content), seed7_vgg(pastiche), style_grams, stylized_images=pastiche,
        total_variation_weight=expected["total_variation_weight"])
    means = {name: float(v) for name, v in losses.batch_means(terms).items()}
    compared = [k for k in expected if k in means]
    assert len(compared) == 14  # Every loss value the fixture holds.
    for name in compared:
        assert means[name] == pytest.approx(expected[name], rel=1e-4), name
    assert float(total[0]) == pytest.approx(
        expected["total_content_loss"] + expected["total_style_loss"]
        + expected["weighted_total_variation_loss"], rel=1e-4)


def test_training_batch_losses_and_gradients_match_magenta(seed7_vgg, fixtures_dir):
    """Magenta's trainer on a 2-example batch with mixed styles and style coefficients.

    Needs the transformer (magenta_style.networks.checkpoints / transformer) to produce the
    stylized batch; checks the loss reductions and that d(mean of per-example totals)
    is Magenta's gradient.
    """
    from magenta_style.networks import checkpoints

    base = fixtures_dir / "magenta" / "trainstep_a025_s2"
    expected = json.loads((base / "expected_training.json").read_text())
    model, _ = checkpoints.load_model(str(base / "init.ckpt"))
    images = np.stack([_png(base / f"content_{i}.png") for i in range(2)])
    labels = tf.constant(expected["labels"])
    table = style_dataset.read_style_dataset(
        str(fixtures_dir / "magenta" / "styledata_s7" / "style_dataset.tfrecord")).grams
    grams = losses.gather_style_grams(
        {name: table[name] for name in expected["style_weights"]}, labels)
    coefficients = losses.gather_style_coefficients(expected["style_coefficients"], labels)
    content_features = seed7_vgg(images)
    with tf.GradientTape() as tape:
        total, terms = losses.total_loss(
            content_features, seed7_vgg(model(images, labels)), grams,
            content_weights=expected["content_weights"],
            style_weights=expected["style_weights"], style_coefficients=coefficients)
        loss = tf.reduce_mean(total)
    assert total.shape == (2,)
    means = losses.batch_means(terms)
    for name, value in expected["losses_before_step_1"].items():
        assert float(means[name]) == pytest.approx(value, rel=1e-5), name
    gradients = dict(zip([checkpoints.magenta_name(v.path) for v in model.trainable_variables],
                         tape.gradient(loss, model.trainable_variables)))
    reference = np.load(base / "gradients_at_init.npz")
    conv_kernel = "transformer/contract/conv1/weights"
    got = tf.convert_to_tensor(gradients[conv_kernel]).numpy()
    ref = reference[conv_kernel.replace("/", "__")]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-3


# ------------------------------------------------------------------ formulas


def test_gram_matrix_is_normalised_by_positions():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.gram_matrix(x).numpy(), _np_gram(x), rtol=1e-5)
    graph = tf.function(losses.gram_matrix,
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    # Unknown batch and size in a graph; channels stay static for the caller.
    assert graph.get_concrete_function().structured_outputs.shape.as_list() == [None, 3, 3]
    np.testing.assert_allclose(graph(tf.constant(x)).numpy(), _np_gram(x), rtol=1e-5)


def test_content_loss_is_per_example_mean_squared_difference():
    a, b = _features(3, seed=1), _features(3, seed=2)
    weights = {"vgg_16/conv2": 0.5, "vgg_16/conv3": 2.0}
    total, terms = losses.content_loss(a, b, weights)
    expected_total = 0
    for name, weight in weights.items():
        per_example = ((b[name].numpy() - a[name].numpy()) ** 2).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(terms[f"content_loss/{name}"].numpy(), per_example,
                                   rtol=1e-5)
        np.testing.assert_allclose(terms[f"weighted_content_loss/{name}"].numpy(),
                                   weight * per_example, rtol=1e-5)
        expected_total = expected_total + weight * per_example
        # The batch mean is Magenta's reduction: a mean over every element.
        whole = ((b[name].numpy() - a[name].numpy()) ** 2).mean()
        assert float(tf.reduce_mean(terms[f"content_loss/{name}"])) == pytest.approx(whole,
                                                                                    rel=1e-5)
    np.testing.assert_allclose(total.numpy(), expected_total, rtol=1e-5)
    np.testing.assert_allclose(terms["total_content_loss"].numpy(), expected_total, rtol=1e-5)


def test_style_loss_with_per_example_coefficients():
    stylized = _features(3, seed=3)
    target_source = _features(3, seed=4)
    targets = {name: losses.gram_matrix(f) for name, f in target_source.items()}
    coefficients = tf.constant([1.0, 0.5, 2.0])
    weights = {"vgg_16/conv1": 1e-2, "vgg_16/conv4": 3e-3}
    total, terms = losses.style_loss(targets, stylized, weights, coefficients)
    expected_total = 0
    for name, weight in weights.items():
        diff = _np_gram(stylized[name].numpy()) - targets[name].numpy()
        per_example = (diff ** 2).mean(axis=(1, 2))
        np.testing.assert_allclose(terms[f"style_loss/{name}"].numpy(), per_example, rtol=1e-4)
        np.testing.assert_allclose(terms[f"weighted_style_loss/{name}"].numpy(),
                                   weight * coefficients.numpy() * per_example, rtol=1e-4)
        expected_total = expected_total + weight * coefficients.numpy() * per_example
    np.testing.assert_allclose(total.numpy(), expected_total, rtol=1e-4)
    # Per-example: example 1 alone gives the same values as inside the batch.
    alone, _ = losses.style_loss({n: t[1:2] for n, t in targets.items()},
                                 {n: f[1:2] for n, f in stylized.items()}, weights,
                                 coefficients[1:2])
    assert float(alone[0]) == pytest.approx(float(total[1]), rel=1e-5)


def test_shared_style_target_broadcasts_over_the_batch():
    stylized = _features(2, seed=5)
    one = {name: losses.gram_matrix(f)[0] for name, f in _features(1, seed=6).items()}
    shared, _ = losses.style_loss(one, stylized)
    tiled = {name: tf.stack([g, g]) for name, g in one.items()}
    per_example, _ = losses.style_loss(tiled, stylized)
    np.testing.assert_allclose(shared.numpy(), per_example.numpy(), rtol=1e-6)


def test_total_variation_formula():
    images = np.random.default_rng(7).uniform(size=(2, 5, 6, 3)).astype(np.float32)
    dy = images[:, 1:] - images[:, :-1]
    dx = images[:, :, 1:] - images[:, :, :-1]
    expected = ((dy ** 2).sum(axis=(1, 2, 3)) / 2 / (4 * 6 * 3)
                + (dx ** 2).sum(axis=(1, 2, 3)) / 2 / (5 * 5 * 3))
    np.testing.assert_allclose(losses.total_variation_loss(images).numpy(), expected, rtol=1e-5)
    assert float(losses.total_variation_loss(np.ones((1, 4, 4, 3), np.float32))[0]) == 0.0


def test_total_loss_names_and_per_example_shapes():
    content, stylized = _features(2, seed=8), _features(2, seed=9)
    grams = {name: losses.gram_matrix(f) for name, f in _features(2, seed=10).items()}
    images = tf.random.stateless_uniform([2, 8, 8, 3], seed=[1, 2])
    total, terms = losses.total_loss(content, stylized, grams, stylized_images=images,
                                     total_variation_weight=10.0)
    expected_names = {"content_loss/vgg_16/conv3", "weighted_content_loss/vgg_16/conv3",
                      "total_content_loss", "total_style_loss", "total_variation_loss",
                      "weighted_total_variation_loss", "total_loss"}
    for block in range(1, 5):
        expected_names |= {f"style_loss/vgg_16/conv{block}",
                           f"weighted_style_loss/vgg_16/conv{block}"}
    assert set(terms) == expected_names
    assert all(tuple(v.shape) == (2,) for v in terms.values())
    np.testing.assert_allclose(
        total.numpy(), (terms["total_content_loss"] + terms["total_style_loss"]
                        + 10.0 * terms["total_variation_loss"]).numpy(), rtol=1e-6)
    no_tv_total, no_tv_terms = losses.total_loss(content, stylized, grams)
    assert "total_variation_loss" not in no_tv_terms
    np.testing.assert_allclose(no_tv_total.numpy(),
                               (terms["total_content_loss"] + terms["total_style_loss"]).numpy(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="needs stylized_images"):
        losses.total_loss(content, stylized, grams, total_variation_weight=1.0)


def test_total_loss_under_xla():
    content, stylized = _features(2, seed=11), _features(2, seed=12)
    grams = {name: losses.gram_matrix(f) for name, f in _features(2, seed=13).items()}
    coefficients = tf.constant([0.5, 1.0])
    eager, _ = losses.total_loss(content, stylized, grams, style_coefficients=coefficients)
    compiled = tf.function(
        lambda c, s, g, k: losses.total_loss(c, s, g, style_coefficients=k)[0],
        jit_compile=True)
    np.testing.assert_allclose(compiled(content, stylized, grams, coefficients).numpy(),
                               eager.numpy(), rtol=1e-5)


def test_gather_helpers():
    table = {"vgg_16/conv1": tf.reshape(tf.range(12, dtype=tf.float32), [3, 2, 2])}
    gathered = losses.gather_style_grams(table, tf.constant([2, 0, 2]))
    np.testing.assert_array_equal(gathered["vgg_16/conv1"].numpy(),
                                  table["vgg_16/conv1"].numpy()[[2, 0, 2]])
    np.testing.assert_array_equal(
        losses.gather_style_coefficients([1.0, 0.5, 0.25], tf.constant([1, 2])).numpy(),
        [0.5, 0.25])


# ------------------------------------------------------------------ weights parsing


def test_parse_layer_weights_forms():
    assert config.parse_layer_weights("vgg_16/conv3:1.0,vgg_16/conv4:2e-4") == {
        "vgg_16/conv3": 1.0, "vgg_16/conv4": 2e-4}
    assert config.parse_layer_weights(' {"vgg_16/conv3": 1.0, \'vgg_16/pool5\': 3} ') == {
        "vgg_16/conv3": 1.0, "vgg_16/pool5": 3.0}
    assert config.parse_layer_weights("") == {}
    for weights in (losses.DEFAULT_CONTENT_WEIGHTS, losses.DEFAULT_STYLE_WEIGHTS):
        assert config.parse_layer_weights(config.format_layer_weights(weights)) == weights
    assert losses.DEFAULT_STYLE_WEIGHTS == {f"vgg_16/conv{i}": 1e-4 for i in range(1, 5)}


@pytest.mark.parametrize("text, message", [
    ("vgg_16/conv6:1.0", "unknown VGG end point 'vgg_16/conv6'"),
    ("vgg16/conv3:1.0", "unknown VGG end point 'vgg16/conv3'"),
    ("vgg_16/conv3=1.0", "expected NAME:WEIGHT"),
    ("vgg_16/conv3:abc", "weight of vgg_16/conv3 is not a number"),
    ("vgg_16/conv3:-1", "must be finite and >= 0"),
    ("vgg_16/conv3:nan", "must be finite and >= 0"),
    ("vgg_16/conv3:1,vgg_16/conv3:2", "given twice"),
    ("{'vgg_16/conv3': 'x'}", "must be a number"),
    ("{vgg_16/conv3: 1}", "cannot parse"),
    # Once ast.literal_eval: a TypeError (unhashable key) and a MemoryError/RecursionError.
    ("{[1]: 2}", "names must be quoted strings"),
    ("{" * 100_000 + "}" * 100_000, "cannot parse"),
    ("{'vgg_16/conv3': {'vgg_16/conv4': 1}}", "cannot parse"),
    ("{'vgg_16/conv3': 1", "must end with '}'"),
    ("{'vgg_16/conv3: 1}", "unterminated quote"),
    ("vgg_16/conv3:1 vgg_16/conv4:2", "expected ','"),
    ("__import__('os').system('true')", "NAME:WEIGHT"),
])
def test_parse_layer_weights_errors(text, message):
    with pytest.raises(config.LossWeightsError, match=message) as info:
        config.parse_layer_weights(text, "--style_weights")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_parse_layer_weights_python_dict_details():
    # What Magenta's flags held (ast.literal_eval of a dict): any quotes, a trailing
    # comma, ints, exponents; and the pair form with a trailing comma.
    assert config.parse_layer_weights('{"vgg_16/conv1": 1e-4, \'vgg_16/conv2\': 2,}') == {
        "vgg_16/conv1": 1e-4, "vgg_16/conv2": 2.0}
    assert config.parse_layer_weights("vgg_16/conv3: .5 ,") == {"vgg_16/conv3": 0.5}
    assert config.parse_layer_weights("{}") == {}
    with pytest.raises(config.LossWeightsError) as info:
        config.parse_layer_weights("x" * 10_000 + ":1", "--style_weights")
    assert len(str(info.value)) < 400


def test_losses_reject_unknown_layers():
    content, stylized = _features(1, seed=14), _features(1, seed=15)
    with pytest.raises(config.LossWeightsError, match="content weights: unknown .*conv33"):
        losses.content_loss(content, stylized, {"vgg_16/conv33": 1.0})
