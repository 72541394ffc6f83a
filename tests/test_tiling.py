"""Tests for magenta_style.inference.tiling: tiled stylization equals untiled stylization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style.inference import tiling
from magenta_style.networks import boe
from magenta_style.networks import transformer

# Tiled and untiled runs differ only by float32 summation order in the statistics
# (float64 merge of per-tile moments vs one tf.nn.moments); measured ~1e-5.
TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def model():
    """A small network with random, non-trivial gamma/beta (the initial 1/0 would hide bugs)."""
    keras.utils.set_random_seed(0)  # Seeded kernels: the approximation bounds below are ratios.
    net = transformer.build_transformer(config.ModelConfig(3, 0.25))
    rng = np.random.default_rng(0)
    for weight in net.weights:
        if weight.name == "gamma":
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
        elif weight.name == "beta":
            weight.assign(rng.normal(0.0, 0.3, weight.shape))
    return net


def _image(height, width, seed=0):
    """Smooth structure plus noise, float32 [H, W, 3] in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = tf.image.resize(rng.uniform(size=(1, 6, 8, 3)), [height, width]).numpy()[0]
    return np.clip(coarse + 0.15 * rng.normal(size=(height, width, 3)), 0, 1).astype(np.float32)


def _tile_pixels(model, core=32):
    return (core + 2 * tiling.default_halo(model)) ** 2


@pytest.mark.slow
def test_tiled_equals_untiled_for_a_style_id(model):
    image = _image(122, 150)  # Not multiples of 4: the bottom/right padding is tiled too.
    max_pixels = _tile_pixels(model)
    tiles = tiling.plan_tiles(124, 152, max_pixels, tiling.default_halo(model))
    assert len(tiles) >= 12  # Many inner tile edges, in both directions.
    expected = model(image[None], tf.constant([2])).numpy()[0]
    calls = []
    tiled = tiling.stylize_tiled(model, image, 2, max_tile_pixels=max_pixels,
                                 progress=lambda done, total: calls.append((done, total)))
    assert tiled.shape == image.shape
    np.testing.assert_allclose(tiled, expected, atol=TOLERANCE, rtol=0)
    assert calls[-1] == (17 * len(tiles), 17 * len(tiles))


@pytest.mark.slow
def test_tiled_equals_untiled_for_a_style_map_with_strength(model):
    image = _image(96, 104, seed=1)
    ramp = np.linspace(0, 1, 104, dtype=np.float32)[None, :].repeat(96, axis=0)
    style_map = np.stack([1 - ramp, ramp * 0.7, ramp * 0.3], axis=-1)
    expected = model(image[None], tf.constant(style_map[None]),
                     tf.constant([0.6])).numpy()[0]
    tiled = tiling.stylize_tiled(model, image, style_map, strength=0.6,
                                 max_tile_pixels=_tile_pixels(model))
    np.testing.assert_allclose(tiled, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_a_short_halo_breaks_equality(model):
    """The halo is what makes tiles exact: the comparison above can fail."""
    image = _image(96, 96, seed=2)
    expected = model(image[None], tf.constant([0])).numpy()[0]
    tiled = tiling.stylize_tiled(model, image, 0, max_tile_pixels=(32 + 2 * 8) ** 2,
                                 halo_pixels=8)
    assert np.abs(tiled - expected).max() > 1e-2


@pytest.mark.slow
def test_weights_row_matches_the_network(model):
    image = _image(64, 72, seed=3)
    weights = np.array([0.2, 0.0, 0.8], np.float32)
    expected = model(image[None], tf.constant(weights[None])).numpy()[0]
    tiled = tiling.stylize_tiled(model, image, weights, max_tile_pixels=_tile_pixels(model))
    np.testing.assert_allclose(tiled, expected, atol=TOLERANCE, rtol=0)


def test_receptive_radius_of_the_magenta_architecture(model):
    # 9x9 (4) + 3x3 s2 (1, rounded to 2) + 3x3 s2 at 1/2 (2, rounded to 4) + 10 3x3 at 1/4
    # (40) + 3x3 at 1/2 (2) + 3x3 (1) + 9x9 (4) = 55.
    assert tiling.receptive_radius(model) == 55
    assert tiling.default_halo(model) == 60


def test_plan_tiles_partition_the_image_on_the_stride_grid():
    tiles = tiling.plan_tiles(200, 328, 200 * 200, 40)
    coverage = np.zeros([200, 328], np.int32)
    for tile in tiles:
        (r0, r1), (c0, c1) = tile.core_rows, tile.core_cols
        assert all(v % 4 == 0 for v in (r0, r1, c0, c1) + tile.rows + tile.cols)
        assert (tile.rows[1] - tile.rows[0]) * (tile.cols[1] - tile.cols[0]) <= 200 * 200
        assert tile.rows[0] == max(r0 - 40, 0) and tile.cols[1] == min(c1 + 40, 328)
        coverage[r0:r1, c0:c1] += 1
    assert (coverage == 1).all()


def test_too_small_tiles_are_refused(model):
    with pytest.raises(tiling.TilingError, match="max_tile_pixels=1000 is too small"):
        tiling.stylize_tiled(model, _image(64, 64), 0, max_tile_pixels=1000)


def test_bad_style_is_refused(model):
    with pytest.raises(tiling.TilingError, match="outside 0..2"):
        tiling.stylize_tiled(model, _image(64, 64), 5)
    with pytest.raises(tiling.TilingError, match="3 styles"):
        tiling.stylize_tiled(model, _image(64, 64), np.ones([2], np.float32))


@pytest.mark.parametrize("out_size,rows,cols", [
    ((37, 53), (0, 37), (0, 53)), ((20, 90), (4, 17), (30, 88)), ((9, 9), (3, 9), (0, 2))])
def test_resize_window_matches_tf_resize(out_size, rows, cols):
    weights = np.random.default_rng(4).uniform(size=(23, 41, 3)).astype(np.float32)
    full = tf.image.resize(weights[None], out_size, method="bilinear").numpy()[0]
    window = tiling.resize_window(weights, *out_size, rows, cols)
    np.testing.assert_allclose(window, full[rows[0]:rows[1], cols[0]:cols[1]], atol=1e-6)


def test_stylize_image_runs_small_images_untiled(model):
    image = _image(30, 41)
    expected = model(image[None], tf.constant([1]), tf.constant([0.5])).numpy()[0]
    out = tiling.stylize_image(model, image, 1, strength=0.5)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.slow
def test_downscaled_statistics_are_close_on_a_smooth_image(model):
    rng = np.random.default_rng(5)
    image = tf.image.resize(rng.uniform(size=(1, 4, 5, 3)), [160, 200]).numpy()[0]
    expected = model(image[None], tf.constant([0])).numpy()[0]
    out = tiling.stylize_image(model, image, 0, max_tile_pixels=_tile_pixels(model),
                               statistics="downscaled")
    error = np.abs(out - expected).mean()
    # Per-tile statistics (what plain tiling does) for comparison: four quadrants.
    naive = np.concatenate([
        np.concatenate([model(image[None, r:r + 80, c:c + 100], tf.constant([0])).numpy()[0]
                        for c in (0, 100)], axis=1) for r in (0, 80)], axis=0)
    naive_error = np.abs(naive - expected).mean()
    # Approximate by design, but far closer than per-tile statistics.
    assert 0 < error < 0.05
    assert error < 0.3 * naive_error


def test_the_same_scheduler_tiles_the_boe_generator_exactly(monkeypatch):
    """Tiling reads only a network's structure(): the BOE generator's parallel Y/U/V
    branches (4:2:0 chroma at half resolution) tile as exactly as the Magenta network."""
    keras.utils.set_random_seed(1)
    net = boe.build_boe(config.ModelConfig(2, 0.25, generator="boe_yuv420",
                                           boe_norm="conditional", boe_composite="bilinear"))
    rng = np.random.default_rng(6)
    for weight in net.weights:
        if weight.name in ("gamma", "beta"):
            weight.assign(rng.normal(float(weight.name == "gamma"), 0.3, weight.shape))
    # Y: 3x3 (1) + pool (2) + 3x3 at 1/2 (4) + pool (4) + 3x3 at 1/4 (8) + bilinear x2 at
    # 1/4 (12) + 3x3 at 1/2 (14) + bilinear x2 at 1/2 (16) + 3x3 (17).
    assert tiling.receptive_radius(net) == 17
    monkeypatch.setattr(tiling, "TILED_GENERATORS", (boe.BoeGenerator,))
    image = _image(38, 62, seed=7)  # Padded to 40 x 64 like the network pads it.
    max_pixels = _tile_pixels(net)
    assert len(tiling.plan_tiles(40, 64, max_pixels, tiling.default_halo(net))) == 4
    expected = net(image[None], tf.constant([1]), tf.constant([0.8])).numpy()[0]
    tiled = tiling.stylize_tiled(net, image, 1, strength=0.8, max_tile_pixels=max_pixels)
    np.testing.assert_allclose(tiled, expected, atol=TOLERANCE, rtol=0)
