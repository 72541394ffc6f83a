"""inference.live: the demo's inputs turned into the project's options, and its model calls."""

import numpy as np
from PIL import Image
import pytest

from magenta_style import config as config_lib
from magenta_style.inference import live
from magenta_style.inference import stylizer
from magenta_style.networks import transformer


@pytest.fixture(scope="module")
def tiny(randomize_norms):
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25, style_names=("ink", "fire"))
    model = transformer.build_transformer(model_config)
    randomize_norms(model, seed=5)
    return model, model_config


def _photo(size=32):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, [size, size, 3]).astype(np.float32)


def test_fit_size_scales_down_only():
    assert live.fit_size(480, 640, 256) == (192, 256)
    assert live.fit_size(100, 50, 256) == (100, 50)
    assert live.fit_size(4000, 3, 100) == (100, 1)


def test_fit_image_accepts_grey_rgba_and_float():
    assert live.fit_image(np.zeros([40, 20], np.uint8), 20).shape == (20, 10, 3)
    assert live.fit_image(np.zeros([8, 8, 4], np.uint8), 20).shape == (8, 8, 3)
    out = live.fit_image(np.full([4, 4, 3], 0.5, np.float32), 20)
    assert out.dtype == np.float32 and abs(float(out.mean()) - 128 / 255) < 1e-6
    with pytest.raises(live.LiveError, match="shape"):
        live.fit_image(np.zeros([4, 4, 2], np.uint8), 20)


def test_palette_is_distinct_and_never_the_background():
    colors = live.palette(40)
    assert len(set(colors)) == 40
    assert live.BACKGROUND_COLOR not in colors
    assert all(len(c) == 7 and c.startswith("#") for c in colors)


def test_mix_spec_is_not_normalized():
    spec = live.mix_spec([0.5, 0.0, 2.0])
    np.testing.assert_allclose(spec.weight_rows(3), [[0.5, 0.0, 2.0]])
    with pytest.raises(live.LiveError, match="at 0"):
        live.mix_spec([0, 0])
    with pytest.raises(live.LiveError, match=">= 0"):
        live.mix_spec([1, -1])


def test_painted_map_takes_brush_styles_and_the_sliders_elsewhere():
    colors = live.palette(3)
    layer = np.zeros([4, 8, 4], np.uint8)
    red = [int(colors[2][i:i + 2], 16) for i in (1, 3, 5)]
    layer[:, :4, :3] = red
    layer[:, :4, 3] = 255
    style_map = live.painted_style_map(layer, [0.25, 0.75, 0], colors)
    weights = style_map.weights(3, (4, 8))
    np.testing.assert_allclose(weights[:, :4], np.tile([0, 0, 1], (4, 4, 1)))
    np.testing.assert_allclose(weights[:, 4:], np.tile([0.25, 0.75, 0], (4, 4, 1)))
    # Nothing painted: no map; all painted: the sliders may all be 0.
    assert live.painted_style_map(np.zeros([4, 8, 4], np.uint8), [1, 0, 0], colors) is None
    layer[..., 3] = 255
    assert live.painted_style_map(layer, [0, 0, 0], colors) is not None
    with pytest.raises(live.LiveError, match="RGBA"):
        live.painted_style_map(np.zeros([4, 8, 3], np.uint8), [1, 0, 0], colors)


def test_load_photo_names_the_users_file(tmp_path):
    bad = tmp_path / "upload_123"
    bad.write_text("hello")
    with pytest.raises(live.LiveError, match=r"^holiday\.jpg: not an image"):
        live.load_photo(str(bad), 64, 10_000, name="holiday.jpg")
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(big)
    with pytest.raises(live.LiveError, match="too large.*--max_upload_pixels"):
        live.load_photo(str(big), 64, 10_000)
    assert live.load_photo(str(big), 64, 100_000).shape == (32, 64, 3)


def test_fps_meter_counts_frames_in_its_window():
    now = [0.0]
    meter = live.FpsMeter(window=2.0, clock=lambda: now[0])
    assert meter.fps() == 0
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    assert meter.fps() == pytest.approx(10.0)
    now[0] += 5
    meter.tick()
    assert meter.fps() == 0
    meter.reset()
    assert meter.dropped == 0


def test_result_order_drops_a_result_that_a_newer_call_overtook():
    order = live.ResultOrder()
    older, newer = order.start(), order.start()
    assert order.may_show(newer)  # The newer call finished first...
    assert not order.may_show(older)  # ...so the older one's picture is dropped.
    latest = order.start()
    assert order.may_show(latest)
    # In order, every result shows.
    first, second = order.start(), order.start()
    assert order.may_show(first) and order.may_show(second)


def test_live_stylizer_matches_the_batch_path(tiny):
    model, model_config = tiny
    runner = live.LiveStylizer(model, model_config)
    assert runner.style_names() == ["ink", "fire"]
    photo = _photo()
    for styles, strength, keep in (("1", 1.0, False), ("{0:0.5,1:1}", 0.4, True)):
        options = stylizer.StylizeOptions(styles=styles, strength=strength,
                                          preserve_colors=keep)
        expected = stylizer.Stylizer(model, model_config, options)(photo)[0]
        got = runner(photo, options)
        assert got.seconds > 0
        np.testing.assert_allclose(got.image, np.clip(expected, 0, 1), atol=2e-5)
    colors = live.palette(2)
    layer = np.zeros([32, 32, 4], np.uint8)
    layer[:, :16] = [int(colors[1][i:i + 2], 16) for i in (1, 3, 5)] + [255]
    options = stylizer.StylizeOptions(style_map=live.painted_style_map(layer, [1, 0], colors))
    expected = stylizer.Stylizer(model, model_config, options)(photo)[0]
    np.testing.assert_allclose(runner(photo, options).image, np.clip(expected, 0, 1),
                               atol=2e-5)


def test_live_stylizer_drops_frames_while_busy_and_caps_pixels(tiny):
    model, model_config = tiny
    runner = live.LiveStylizer(model, model_config)
    options = stylizer.StylizeOptions(styles="0")
    runner._model_lock.acquire()  # Another tab's call in progress.
    try:
        assert runner(_photo(), options, block=False) is None
    finally:
        runner._model_lock.release()
    assert runner(_photo(), options, block=False) is not None
    runner.max_pixels = 100
    with pytest.raises(live.LiveError, match="cap of 100 pixels"):
        runner(_photo(), options)
    with pytest.raises(live.LiveError, match="style 5 does not exist"):
        live.LiveStylizer(model, model_config)(_photo(), stylizer.StylizeOptions(styles="5"))


@pytest.mark.slow  # Reads the fixture's full-size arbitrary-style checkpoint.
def test_demo_style_images_flag_needs_an_arbitrary_model_and_at_most_the_sliders(
        tmp_path, fixtures_dir, randomize_norms):
    from magenta_style import cli
    from magenta_style import demo
    from magenta_style.networks import checkpoints

    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25)
    model = transformer.build_transformer(model_config)
    checkpoints.save_model(model, model_config, str(tmp_path / "nstyle"))
    for i in range(demo.MAX_STYLE_IMAGES + 1):
        Image.fromarray(np.full([8, 8, 3], 20 * i, np.uint8)).save(tmp_path / f"s{i}.png")
    settings = dict(photo_size=64, style_images=str(tmp_path / "s*.png"))
    with pytest.raises(cli.UsageError, match=r"^--style_images: --checkpoint holds an N-style"):
        demo.load_model(config_lib.DemoConfig(checkpoint=str(tmp_path / "nstyle"), **settings),
                        str(tmp_path))
    arbitrary = str(fixtures_dir / "magenta" / "arbitrary_s5" / "model.ckpt")
    with pytest.raises(cli.UsageError, match=rf"9 images; the page takes at most "
                                             rf"{demo.MAX_STYLE_IMAGES}$"):
        demo.load_model(config_lib.DemoConfig(checkpoint=arbitrary, **settings), str(tmp_path))
