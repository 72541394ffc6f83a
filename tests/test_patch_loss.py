"""Semantic patch (MRF) style loss: the checks of seed-systems.md 2.8 (seed 002).

Stand-in VGG weights (`standin:7`), 32 px images: every check is a property that holds
for any weights (which patches match, what the gradient is), never picture quality.
"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magenta_style.networks import patch_loss
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights

LAYERS = ("vgg_16/conv2", "vgg_16/conv3")
SIZE = 32


@pytest.fixture(scope="module")
def net():
    return vgg.build_vgg16("standin:7")


def _features(net, image):
    outputs = net(tf.convert_to_tensor(image, tf.float32))
    return {name: outputs[name] for name in LAYERS}


def two_region_style(size=SIZE, seed=0):
    """Left half label A (red texture), right half label B (blue stripes); one-hot maps."""
    rng = np.random.RandomState(seed)
    image = np.zeros([size, size, 3], np.float32)
    half = size // 2
    image[:, :half] = [0.8, 0.15, 0.1]
    image[:, :half] += 0.2 * rng.rand(size, half, 1)
    rows = np.arange(size)[:, None]
    image[:, half:] = [0.1, 0.2, 0.8]
    image[:, half:, 2:] += 0.2 * ((rows // 2) % 2)[..., None]
    image[:, half:] += 0.05 * rng.rand(size, size - half, 1)  # No two patches alike.
    image = np.clip(image, 0, 1)[None]
    labels = np.zeros([size, size], np.int64)
    labels[:, half:] = 1
    one_hot = (np.arange(2) == labels[..., None]).astype(np.float32)[None] * 255.0
    return image, one_hot


def noise_image(size=SIZE, seed=1):
    return np.random.RandomState(seed).uniform(0.1, 0.9, [1, size, size, 3]).astype(np.float32)


def _pure_patches(semantic_map, hw, k=3):
    """[Qh * Qw] label of each k x k patch wholly inside one label at the layer, or -1."""
    pooled = patch_loss.downsample_map(semantic_map, hw).numpy()[0] / 255.0
    rows, cols = hw[0] - k + 1, hw[1] - k + 1
    labels = np.full([rows, cols], -1)
    for r in range(rows):
        for c in range(cols):
            window = pooled[r:r + k, c:c + k]
            for label in range(window.shape[-1]):
                if np.all(window[..., label] == 1.0):
                    labels[r, c] = label
    return labels.ravel()


def _confined_fraction(net, gamma_scale):
    style, style_map = two_region_style()
    content_map = style_map[:, :, ::-1]  # Mirrored: A on the right.
    style_features = _features(net, style)
    gammas = patch_loss.equalizing_gamma(style_features, style_map)
    gammas = {name: gamma * gamma_scale for name, gamma in gammas.items()}
    loss = patch_loss.PatchStyleLoss(style_features, {n: 1.0 for n in LAYERS}, style_map,
                                     semantic_weight=gammas)
    while gamma_scale > 0 and min(loss.semantic_fraction().values()) < 0.5:
        gammas = {name: 2 * gamma for name, gamma in gammas.items()}
        loss = patch_loss.PatchStyleLoss(style_features, {n: 1.0 for n in LAYERS},
                                         style_map, semantic_weight=gammas)
    output_features = _features(net, noise_image())
    matches = loss.match(output_features, content_map)
    kept = total = 0
    for name in LAYERS:
        hw = tuple(output_features[name].shape[1:3])
        out_labels = _pure_patches(content_map, hw)
        style_labels = _pure_patches(style_map, tuple(style_features[name].shape[1:3]))
        matched = style_labels[matches[name].numpy().ravel()]
        inside = out_labels >= 0
        kept += int(np.sum(matched[inside] == out_labels[inside]))
        total += int(np.sum(inside))
    assert total > 50
    return kept / total, loss


def test_semantic_confinement(net):
    """Check 1: at gamma >= gamma_eq, output patches match inside their own label only."""
    confined, loss = _confined_fraction(net, 1.0)
    assert min(loss.semantic_fraction().values()) >= 0.5
    assert confined >= 0.95
    unaware, _ = _confined_fraction(net, 0.0)
    assert unaware < 0.75


def _loss_and_pixel_gradient(net, loss, image, content_map):
    image = tf.Variable(image)
    with tf.GradientTape() as tape:
        total, _ = loss(_features(net, image), content_map)
    return float(total), tape.gradient(total, image).numpy()


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-30)


def test_reduces_to_li_and_wand(net):
    """Check 2: gamma = 0, or all-zero maps, give the plain patch-MRF loss and gradient."""
    style, style_map = two_region_style()
    content_map = style_map[:, :, ::-1]
    style_features = _features(net, style)
    weights = {name: 1.0 for name in LAYERS}
    image = noise_image()
    plain = patch_loss.PatchStyleLoss(style_features, weights, None)
    plain_e, plain_g = _loss_and_pixel_gradient(net, plain, image, None)
    assert plain_e > 0
    for semantic_map, gamma in ((style_map, 0.0), (np.zeros_like(style_map), 50.0)):
        loss = patch_loss.PatchStyleLoss(style_features, weights, semantic_map,
                                         semantic_weight=gamma)
        e, g = _loss_and_pixel_gradient(net, loss, image, np.zeros_like(content_map)
                                        if gamma else content_map)
        assert abs(e - plain_e) <= 1e-6 * plain_e
        assert _rel(g, plain_g) <= 1e-6
    # And the semantic channels do change the loss when they count.
    loss = patch_loss.PatchStyleLoss(style_features, weights, style_map, semantic_weight=1.0)
    e, _ = _loss_and_pixel_gradient(net, loss, image, content_map)
    assert abs(e - plain_e) > 1e-3 * plain_e


def _brute_force(style, style_map, output, content_map, gamma, k=3):
    """Explicit patch lists in float64: (matches [Q], correlation gaps [Q], E)."""
    def patches(x):
        _, h, w, _ = x.shape
        return np.stack([x[0, r:r + k, c:c + k].ravel()
                         for r in range(h - k + 1) for c in range(w - k + 1)])

    style_aug = np.concatenate([style, gamma * style_map], -1).astype(np.float64)
    output_aug = np.concatenate([output, gamma * content_map], -1).astype(np.float64)
    style_patches, output_patches = patches(style_aug), patches(output_aug)
    scores = (output_patches @ style_patches.T
              / np.linalg.norm(output_patches, axis=1)[:, None]
              / np.linalg.norm(style_patches, axis=1)[None])
    best = np.argmax(scores, axis=1)
    ordered = np.sort(scores, axis=1)
    gaps = ordered[:, -1] - ordered[:, -2]
    energy = np.sum((output_patches - style_patches[best]) ** 2)
    return best, gaps, energy


@pytest.mark.parametrize("budget,chunk", [(patch_loss.DEFAULT_MATCH_BUDGET_BYTES, 4096),
                                          (4 * 9 * 5, 5)])
def test_matcher_equals_brute_force(budget, chunk):
    """Check 3a: the chunked convolution matcher = an argmax over explicit patch lists."""
    rng = np.random.RandomState(3)
    style = rng.randn(1, 9, 8, 4).astype(np.float32)
    style_map = (rng.rand(1, 9, 8, 2) * 255).astype(np.float32)
    output = rng.randn(1, 8, 10, 4).astype(np.float32)
    content_map = (rng.rand(1, 8, 10, 2) * 255).astype(np.float32)
    gamma = 0.01
    loss = patch_loss.PatchStyleLoss({"l": style}, {"l": 2.0}, style_map,
                                     semantic_weight=gamma, match_budget_bytes=budget,
                                     style_chunk=chunk)
    best, gaps, energy = _brute_force(style, style_map, output, content_map, gamma)
    found = loss.match({"l": output}, content_map)["l"].numpy()
    assert found.shape == (6, 8)
    found = found.ravel()
    differ = found != best
    assert np.all(gaps[differ] < 1e-5)  # Only numerical near-ties may differ.
    assert np.mean(differ) < 0.05
    # Unknown sizes inside a tf.function take the while-loop path: same matches.
    traced = tf.function(lambda x, m: loss.match({"l": x}, m)["l"], input_signature=[
        tf.TensorSpec([1, None, None, 4]), tf.TensorSpec([1, None, None, 2])])
    np.testing.assert_array_equal(traced(output, content_map).numpy().ravel(), found)
    total, terms = loss({"l": output}, content_map)
    frozen, _ = loss.loss_from_matches({"l": output}, content_map, {"l": best.reshape(6, 8)})
    assert float(frozen) == pytest.approx(2.0 * energy, rel=1e-5)
    assert float(terms["l"]) == pytest.approx(float(total))
    assert loss.usage()["l"] == len(np.unique(found))


def test_self_match_is_identity_with_zero_loss(net):
    """Check 3b: output = style and content map = style map => NN(i) = i and E_s = 0."""
    style, style_map = two_region_style()
    style_features = _features(net, style)
    gamma = patch_loss.equalizing_gamma(style_features, style_map)
    loss = patch_loss.PatchStyleLoss(style_features, {n: 1.0 for n in LAYERS}, style_map,
                                     semantic_weight=gamma)
    total, _ = loss(style_features, style_map)
    for name, matches in loss.last_matches().items():
        np.testing.assert_array_equal(matches, np.arange(loss.num_style_patches[name]))
        assert loss.usage()[name] == loss.num_style_patches[name]
    assert float(total) == 0.0


def test_gradient_path(net):
    """Check 4: no gradient into the content map; frozen-match pixel gradient = FD."""
    style, style_map = two_region_style()
    content_map = tf.Variable(style_map[:, :, ::-1].copy())
    style_features = _features(net, style)
    loss = patch_loss.PatchStyleLoss(style_features, {n: 1.0 for n in LAYERS}, style_map,
                                     semantic_weight=patch_loss.equalizing_gamma(
                                         style_features, style_map))
    image = tf.Variable(noise_image())
    with tf.GradientTape(persistent=True) as tape:
        total, _ = loss(_features(net, image), content_map)
    map_gradient = tape.gradient(total, content_map)
    assert map_gradient is None or not np.any(map_gradient.numpy())
    matches = loss.match(_features(net, image), content_map)

    # Central differences of a float32 sum over thousands of patches drown in rounding,
    # so both sides run in float64 through the same stand-in weights.
    def energy(x):
        return loss.loss_from_matches(_features64(net, x), content_map, matches)[0]

    x = tf.Variable(noise_image().astype(np.float64))
    with tf.GradientTape() as tape:
        frozen = energy(x)
    assert float(frozen) == pytest.approx(float(total), rel=1e-4)
    gradient = tape.gradient(frozen, x).numpy()
    direction = np.random.RandomState(5).randn(*x.shape)
    direction /= np.linalg.norm(direction)
    step = 1e-6  # Small enough that no ReLU changes side (1e-4 crosses some).
    finite = (float(energy(x + step * direction)) - float(energy(x - step * direction))) \
        / (2 * step)
    analytic = float(np.sum(gradient * direction))
    assert abs(analytic) > 0
    assert finite == pytest.approx(analytic, rel=1e-3)


def _features64(net, image):
    """The stand-in VGG's end points in float64 (same weights as net, up to conv3)."""
    x = tf.cast(image, tf.float64) * 255.0 - tf.constant(vgg.RGB_MEANS, tf.float64)
    convs = iter(net.convs)
    outputs = {}
    for block, reps, _ in vgg_weights.BLOCKS[:3]:
        for _ in range(reps):
            conv = next(convs)
            x = tf.nn.relu(tf.nn.conv2d(x, tf.cast(conv.kernel, tf.float64), 1, "SAME")
                           + tf.cast(conv.bias, tf.float64))
        outputs[f"vgg_16/conv{block}"] = x
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    return {name: outputs[name] for name in LAYERS}


def _save_png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_semantic_map_inputs(tmp_path):
    """Check 6: channel mismatch and aspect ratio errors name both; 1/4 maps are resized."""
    colours = np.zeros([32, 32, 3], np.uint8)
    colours[:, 16:] = [255, 0, 0]
    _save_png(tmp_path / "style_sem.png", colours)
    small = np.zeros([8, 8, 3], np.uint8)
    small[:, 4:] = [255, 0, 0]
    _save_png(tmp_path / "quarter.png", small)
    labels = np.zeros([32, 32], np.int64)
    labels[16:] = 1
    np.save(tmp_path / "labels.npy", labels)

    loaded = patch_loss.load_semantic_map(str(tmp_path / "style_sem.png"), (32, 32))
    assert loaded.shape == (1, 32, 32, 3) and loaded.dtype == np.float32
    assert loaded.max() == 255.0
    resized = patch_loss.load_semantic_map(str(tmp_path / "quarter.png"), (32, 32))
    assert resized.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(resized[0, :, :12], 0.0)
    np.testing.assert_array_equal(resized[0, :, 20:], loaded[0, :, 20:])
    one_hot = patch_loss.load_semantic_map(str(tmp_path / "labels.npy"), (8, 8))
    assert one_hot.shape == (1, 8, 8, 2)
    np.testing.assert_array_equal(one_hot[0, 4:, :, 1], 255.0)
    np.testing.assert_array_equal(one_hot[0, :4, :, 0], 255.0)
    np.testing.assert_array_equal(np.sum(one_hot, -1), 255.0)
    grey = np.full([16, 16], 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert patch_loss.load_semantic_map(str(tmp_path / "grey.png")).shape == (1, 16, 16, 1)
    # A grey map next to a colour map is read as colours; the pair loader agrees.
    style_map, content_map = patch_loss.load_semantic_maps(
        str(tmp_path / "style_sem.png"), (32, 32), str(tmp_path / "grey.png"))
    assert style_map.shape[-1] == content_map.shape[-1] == 3

    with pytest.raises(patch_loss.SemanticMapError) as error:
        patch_loss.load_semantic_maps(str(tmp_path / "style_sem.png"), (32, 32),
                                      str(tmp_path / "labels.npy"), (32, 32))
    message = str(error.value)
    assert "style_sem.png" in message and "labels.npy" in message and "\n" not in message
    with pytest.raises(patch_loss.SemanticMapError) as error:
        patch_loss.check_semantic_maps(loaded, one_hot, "a.png", "b.png")
    assert "a.png" in str(error.value) and "b.png" in str(error.value)
    with pytest.raises(patch_loss.SemanticMapError) as error:
        patch_loss.load_semantic_map(str(tmp_path / "quarter.png"), (32, 64),
                                     image_name="photo.jpg")
    message = str(error.value)
    assert "quarter.png" in message and "photo.jpg" in message and "\n" not in message
    with pytest.raises(patch_loss.SemanticMapError, match="missing.png"):
        patch_loss.load_semantic_map(str(tmp_path / "missing.png"), (32, 32))


# Check 5 runs the project's optimisation loop (optimize_lib: multi-scale L-BFGS-B) with
# shallow stand-in VGG-19 layers, which still carry colour with random weights.
OPT_LAYERS = (("vgg_19/conv1/conv1_2", 1.0), ("vgg_19/conv2/conv2_1", 1.0))


@pytest.fixture(scope="module")
def net19():
    return vgg.build_vgg16("standin:7", architecture="vgg_19", conv_end_points=True)


def _colour_map(one_hot):
    """One-hot [1, H, W, 2] x 255 -> a hand-painted RGB map: A red, B blue."""
    labels = np.argmax(one_hot[0], axis=-1)
    return np.where(labels[..., None] == 0, [255, 0, 0], [0, 0, 255]).astype(np.uint8)


def _optimize(net19, tmp_path, gamma, image_size=SIZE, scales=2, on_snapshot=None):
    from magenta_style import config
    from magenta_style.optimization import optimize_lib
    style, one_hot = two_region_style()
    _save_png(tmp_path / "style_sem.png", _colour_map(one_hot))
    # The doodle moves the border (A: 12 columns instead of 16), so it is not the style's
    # own map, yet every doodle patch, border ones included, has a style patch with the
    # same labels: the semantic part of E can reach zero (a mirrored doodle's B|A border
    # has no A|B counterpart, and its mismatch would be a floor no pixel can lower).
    doodle = np.ones([1, SIZE, SIZE, 2], np.float32) * [0.0, 255.0]
    doodle[:, :, :12] = [255.0, 0.0]
    _save_png(tmp_path / "doodle.png", _colour_map(doodle))
    cfg = config.OptimizeConfig(
        style_images=("style.png",), style_loss="patch", vgg="vgg_19",
        vgg_checkpoint="standin:7", style_semantic_map=str(tmp_path / "style_sem.png"),
        content_semantic_map=str(tmp_path / "doodle.png"), semantic_weight=gamma,
        style_weights=OPT_LAYERS, image_size=image_size, scales=scales, iterations=30,
        init="noise", seed=3, save_every=30 if on_snapshot else 0)
    result = optimize_lib.optimize(cfg, styles=[style[0]], vgg_net=net19,
                                   on_snapshot=on_snapshot)
    return result, style[0], one_hot, doodle


def test_optimisation_reduces_loss_and_doodle_follows_map(net19, tmp_path):
    """Check 5: each scale halves its loss, runs are deterministic, colours follow the map."""
    style, one_hot = two_region_style()
    features = net19(tf.constant(style), up_to=OPT_LAYERS[-1][0])
    gamma = 4 * max(patch_loss.equalizing_gamma(
        {name: features[name] for name, _ in OPT_LAYERS},
        _colour_map(one_hot)[None].astype(np.float32)).values())
    snapshots = {}
    result, style, one_hot, doodle = _optimize(
        net19, tmp_path, gamma,
        on_snapshot=lambda image, scale, _: snapshots.setdefault(scale, image.copy()))
    scales = result.report["scales"]
    assert [entry["size"] for entry in scales] == [[16, 16], [32, 32]]
    for entry in scales:
        assert entry["end"]["total_loss"] <= 0.5 * entry["start"]["total_loss"]
        assert entry["start"]["total_content_loss"] == 0.0  # Doodle mode: no content loss.
    # Deterministic: a second run of the first scale alone lands on the same pixels.
    again, _, _, _ = _optimize(net19, tmp_path, gamma, image_size=16, scales=1)
    np.testing.assert_array_equal(again.image, snapshots[0])
    doodle_a = doodle[0, :, :, 0] > 0
    style_a = one_hot[0, :, :, 0] > 0
    for region, own in ((doodle_a, style_a), (~doodle_a, ~style_a)):
        mean = result.image[region].mean(0)
        assert np.linalg.norm(mean - style[own].mean(0)) < \
            np.linalg.norm(mean - style[~own].mean(0))


def test_optimize_input_errors(net19, tmp_path):
    """Check 6 through optimize_lib: half a map pair, or a scale too small for a patch."""
    from magenta_style import config
    from magenta_style.optimization import optimize_lib
    style, one_hot = two_region_style()
    _save_png(tmp_path / "style_sem.png", _colour_map(one_hot))
    common = dict(style_images=("style.png",), style_loss="patch", vgg="vgg_19",
                  vgg_checkpoint="standin:7", image_size=SIZE, iterations=1, init="noise")
    with pytest.raises(optimize_lib.OptimizeError, match="both semantic maps"):
        optimize_lib.optimize(config.OptimizeConfig(
            content_image="photo.png", style_semantic_map=str(tmp_path / "style_sem.png"),
            **common), content=style[0], styles=[style[0]], vgg_net=net19)
    with pytest.raises(optimize_lib.OptimizeError, match="scale 1 of 2.*conv4_1.*patch"):
        optimize_lib.optimize(config.OptimizeConfig(
            content_image="photo.png", scales=2, **common), content=style[0],
            styles=[style[0]], vgg_net=net19)


def test_optimize_reads_the_maps_together(net19, tmp_path):
    """A label doodle using fewer labels than its style's map gets the style's channels."""
    from magenta_style import config
    from magenta_style.optimization import optimize_lib
    style, _ = two_region_style()
    labels = np.zeros([SIZE, SIZE], np.int64)
    labels[:, 16:] = 1
    labels[:4] = 2  # A third label the doodle does not use.
    np.save(tmp_path / "style_labels.npy", labels)
    np.save(tmp_path / "doodle.npy", labels[:, ::-1] % 2)
    result = optimize_lib.optimize(config.OptimizeConfig(
        style_images=("style.png",), style_loss="patch", vgg="vgg_19",
        vgg_checkpoint="standin:7", style_semantic_map=str(tmp_path / "style_labels.npy"),
        content_semantic_map=str(tmp_path / "doodle.npy"), style_weights=OPT_LAYERS,
        image_size=SIZE, iterations=1, init="noise"), styles=[style[0]], vgg_net=net19)
    assert result.image.shape == (SIZE, SIZE, 3)


def test_label_ids_become_channels_of_the_labels_that_occur(tmp_path):
    # Issue 28 item 5: a 144-byte .npy with one id of 500000 allocated 500001 channels.
    labels = np.zeros([4, 4], np.int64)
    labels[2:] = 500_000
    np.save(tmp_path / "sparse.npy", labels)
    assert (tmp_path / "sparse.npy").stat().st_size < 300
    one_hot = patch_loss.load_semantic_map(str(tmp_path / "sparse.npy"), (8, 8))
    assert one_hot.shape == (1, 8, 8, 2)
    np.testing.assert_array_equal(one_hot[0, 4:, :, 1], 255.0)
    np.testing.assert_array_equal(one_hot[0, :4, :, 0], 255.0)
    # Two maps share one channel per label of either, in id order.
    style = np.full([4, 4], 9, np.int64)
    style[:, :2] = 3
    np.save(tmp_path / "style.npy", style)
    np.save(tmp_path / "content.npy", np.full([4, 4], 9, np.int64))
    style_map, content_map = patch_loss.load_semantic_maps(
        str(tmp_path / "style.npy"), (4, 4), str(tmp_path / "content.npy"))
    assert style_map.shape == content_map.shape == (1, 4, 4, 2)
    np.testing.assert_array_equal(style_map[0, :, :2, 0], 255.0)
    np.testing.assert_array_equal(content_map[0, ..., 1], 255.0)
    np.testing.assert_array_equal(content_map[0, ..., 0], 0.0)
    # Too many distinct labels: one clear line, nothing allocated per id.
    noisy = np.arange(patch_loss.MAX_LABELS + 1, dtype=np.int64).reshape(1, -1) * 1000
    np.save(tmp_path / "noisy.npy", noisy)
    with pytest.raises(patch_loss.SemanticMapError,
                       match=rf"noisy.npy has {patch_loss.MAX_LABELS + 1} distinct label ids, "
                             rf"more than the {patch_loss.MAX_LABELS}"):
        patch_loss.load_semantic_map(str(tmp_path / "noisy.npy"))
    with pytest.raises(patch_loss.SemanticMapError, match="distinct label ids"):
        patch_loss.load_semantic_maps(str(tmp_path / "noisy.npy"), None,
                                      str(tmp_path / "content.npy"))
