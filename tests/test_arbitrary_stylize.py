"""The arbitrary-style model through the one inference path: stylize's --style_images,
--style_mix, --style_image_size and --strength, style maps and tiling."""
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style import stylize
from magenta_style.inference import style_images
from magenta_style.inference import style_maps
from magenta_style.inference import stylizer
from magenta_style.networks import arbitrary
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

SIZE = 48  # --style_image_size in these tests (the predictor needs >= 43).


def _save_png(path, seed, shape=(40, 52, 3)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_arbitrary):
    root = tmp_path_factory.mktemp("arbitrary")
    network = tiny_arbitrary["network"]  # The session's tiny network and checkpoint.
    styles = root / "styles"
    styles.mkdir()
    _save_png(styles / "b_wave.png", 1, (50, 60, 3))
    _save_png(styles / "a_starry.png", 2, (64, 48, 3))
    photo = _save_png(root / "photo.png", 3)
    return {"root": root, "network": network, "checkpoint": tiny_arbitrary["checkpoint"],
            "styles": str(styles), "photo": photo}


def _run(argv, capsys):
    code = stylize.main(["stylize"] + argv)
    return code, capsys.readouterr().err


def _read(path):
    return np.asarray(Image.open(path), np.float32) / 255.0


def test_expand_keeps_the_given_order_and_sorts_folders(tiny, tmp_path):
    single = _save_png(tmp_path / "z.png", 4)
    files = style_images.expand(f"{single},{tiny['styles']}")
    assert [os.path.basename(f) for f in files] == ["z.png", "a_starry.png", "b_wave.png"]
    quoted_glob = os.path.join(tiny["styles"], "*.png")
    assert style_images.expand(quoted_glob) == sorted(style_images.expand(quoted_glob))
    with pytest.raises(style_images.StyleImagesError, match="no such file"):
        style_images.expand(f"{single},{tmp_path / 'missing.png'}")
    with pytest.raises(style_images.StyleImagesError, match="no empty entries"):
        style_images.expand(f"{single},")


def test_load_dispatches_on_what_the_checkpoint_holds(tiny, fixtures_dir):
    model, model_config = stylizer.load(tiny["checkpoint"])
    assert isinstance(model, arbitrary.ArbitraryStyleNetwork)
    assert model_config.generator == "arbitrary"
    nstyle, nstyle_config = stylizer.load(
        str(fixtures_dir / "magenta" / "nstyle_a05_s3" / "model.ckpt"))
    assert isinstance(nstyle, transformer.StyleTransferNetwork)
    assert nstyle_config.num_styles == 3
    with pytest.raises(checkpoints.CheckpointError, match="arbitrary-style"):
        checkpoints.load_model(tiny["checkpoint"])


def test_stylize_writes_one_image_per_style_named_by_stem(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={out}", f"--style_images={tiny['styles']}",
                      f"--style_image_size={SIZE}"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["photo_a_starry.png", "photo_b_wave.png"]
    a, b = _read(out / "photo_a_starry.png"), _read(out / "photo_b_wave.png")
    assert a.shape == b.shape == (40, 52, 3)
    assert np.abs(a - b).mean() > 0.01
    # The same numbers as the network called directly (8-bit rounding apart).
    network = tiny["network"]
    photo = _read(tiny["photo"])[None]
    prepared = style_images.load(style_images.expand(tiny["styles"]), SIZE)
    direct = network.transfer(photo, network.predict_style(prepared[0])).numpy()[0]
    assert np.abs(direct - a).max() <= 1 / 255 + 1e-6


def test_style_mix_writes_one_normalized_mix(tiny, tmp_path, capsys):
    out = tmp_path / "mix"
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={out}", f"--style_images={tiny['styles']}",
                      "--style_mix=1.4,0.6", f"--style_image_size={SIZE}"], capsys)
    assert code == 0, err
    assert os.listdir(out) == ["photo_a_starry_700_b_wave_300.png"]
    network = tiny["network"]
    prepared = style_images.load(style_images.expand(tiny["styles"]), SIZE)
    bottlenecks = style_images.bottlenecks(network, prepared)
    mixed = 0.7 * bottlenecks[0] + 0.3 * bottlenecks[1]
    direct = network.transfer(_read(tiny["photo"])[None], mixed[None]).numpy()[0]
    assert np.abs(direct - _read(out / "photo_a_starry_700_b_wave_300.png")).max() <= 1 / 255 + 1e-5


def test_strength_is_magentas_interpolation(tiny):
    network = tiny["network"]
    paths = style_images.expand(tiny["styles"])
    model, model_config = style_images.bind(network, config.ModelConfig(
        num_styles=1, alpha=0.25, generator="arbitrary"), paths, SIZE)
    assert model_config.num_styles == 2
    assert model_config.style_names == ("a_starry", "b_wave")
    photo = _read(tiny["photo"])
    options = stylizer.StylizeOptions(styles="[0]", strength=0.0)
    zero = stylizer.Stylizer(model, model_config, options)(photo)[0]
    content_bn = network.predict_style(arbitrary.prepare_style_image(photo[None], SIZE))
    expected = network.transfer(photo[None], content_bn).numpy()[0]
    np.testing.assert_allclose(zero, expected, atol=2e-5)
    assert np.abs(zero - photo).mean() > 0.02  # Strength 0 is not the photo.
    half = stylizer.Stylizer(model, model_config,
                             dataclasses_replace(options, strength=0.5))(photo)[0]
    mixed = arbitrary.mix_with_content(model.bottlenecks[:1], content_bn, 0.5)
    np.testing.assert_allclose(half, network.transfer(photo[None], mixed).numpy()[0], atol=2e-5)


def dataclasses_replace(options, **changes):
    import dataclasses
    return dataclasses.replace(options, **changes)


def test_tiling_and_style_maps_work_for_the_bound_model(tiny):
    network = tiny["network"]
    model, model_config = style_images.bind(network, config.ModelConfig(
        num_styles=1, alpha=0.25, generator="arbitrary"), style_images.expand(tiny["styles"]),
        SIZE)
    rng = np.random.default_rng(5)
    photo = rng.uniform(size=(64, 60, 3)).astype(np.float32)
    for strength in (1.0, 0.4):
        options = stylizer.StylizeOptions(styles="[1]", strength=strength, max_tile_pixels=0)
        whole = stylizer.Stylizer(model, model_config, options)(photo)[0]
        tile_limit = stylizer.min_tile_pixels(model)
        tiled = stylizer.Stylizer(model, model_config, dataclasses_replace(
            options, max_tile_pixels=tile_limit))(photo)[0]
        assert stylizer.Stylizer(model, model_config, dataclasses_replace(
            options, max_tile_pixels=tile_limit)).tiled(64, 60) or tile_limit >= 64 * 60
        np.testing.assert_allclose(tiled, whole, atol=1e-4)
    # A per-pixel map: left half style 0, right half style 1.
    mask = np.zeros([64, 60, 3], np.float32)
    mask[:, 30:] = 1.0
    mapping = style_maps.parse_mapping("#000:0,#fff:1")
    style_map = style_maps.StyleMap(mask=mask, mapping=mapping)
    mapped = stylizer.Stylizer(model, model_config, stylizer.StylizeOptions(
        style_map=style_map, max_tile_pixels=0))(photo)[0]
    left = stylizer.Stylizer(model, model_config, stylizer.StylizeOptions(
        styles="[0]", max_tile_pixels=0))(photo)[0]
    right = stylizer.Stylizer(model, model_config, stylizer.StylizeOptions(
        styles="[1]", max_tile_pixels=0))(photo)[0]
    assert np.abs(mapped[:, :20] - left[:, :20]).mean() < np.abs(mapped[:, :20] - right[:, :20]).mean()
    assert np.abs(mapped[:, 40:] - right[:, 40:]).mean() < np.abs(mapped[:, 40:] - left[:, 40:]).mean()


def test_wrong_kind_flags_fail_with_one_line_naming_the_kind(tiny, fixtures_dir, tmp_path,
                                                             capsys):
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={tmp_path / 'x'}", "--which_styles=[0]"], capsys)
    assert code == 2 and "arbitrary-style" in err and len(err.strip().splitlines()) == 1
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={tmp_path / 'x'}"], capsys)
    assert code == 2 and "--style_images" in err
    nstyle = str(fixtures_dir / "magenta" / "nstyle_a05_s3" / "model.ckpt")
    code, err = _run([f"--checkpoint={nstyle}", f"--input_image={tiny['photo']}",
                      f"--output_dir={tmp_path / 'y'}", f"--style_images={tiny['styles']}"],
                     capsys)
    assert code == 2 and "N-style" in err and len(err.strip().splitlines()) == 1
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={tmp_path / 'z'}", f"--style_images={tiny['styles']}",
                      "--style_image_size=30"], capsys)
    assert code == 2 and "at least 43" in err
    code, err = _run([f"--checkpoint={tiny['checkpoint']}", f"--input_image={tiny['photo']}",
                      f"--output_dir={tmp_path / 'w'}", f"--style_images={tiny['styles']}",
                      "--style_mix=1"], capsys)
    assert code == 2 and "1 weight(s) for 2 style image(s)" in err
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "w")


def test_kind_flags_are_refused_before_the_model_loads(tiny, fixtures_dir, tmp_path, capsys,
                                                      monkeypatch):
    """What the model kind decides is checked from the checkpoint's names, not its load."""
    def no_load(*args, **kwargs):
        raise AssertionError("stylizer.load was called")
    monkeypatch.setattr(stylizer, "load", no_load)
    nstyle = str(fixtures_dir / "magenta" / "nstyle_a05_s3" / "model.ckpt")
    common = [f"--input_image={tiny['photo']}", f"--output_dir={tmp_path / 'out'}"]
    for argv, message in (
            ([f"--checkpoint={tiny['checkpoint']}", "--which_styles=[0]"], "--which_styles"),
            ([f"--checkpoint={tiny['checkpoint']}"], "give --style_images"),
            ([f"--checkpoint={nstyle}", f"--style_images={tiny['styles']}"], "N-style"),
            ([f"--checkpoint={tiny['checkpoint']}", f"--style_images={tiny['styles']}",
              "--style_image_size=30"], "at least 43"),
            ([f"--checkpoint={tiny['checkpoint']}", f"--style_images={tiny['styles']}",
              "--style_mix=1"], "1 weight(s) for 2 style image(s)")):
        code, err = _run(argv + common, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert stylizer.holds_arbitrary_model(tiny["checkpoint"]) is True
    assert stylizer.holds_arbitrary_model(nstyle) is False
    assert stylizer.holds_arbitrary_model(str(tmp_path / "missing")) is None
    assert not os.path.exists(tmp_path / "out")
