"""Tests for magenta_style.stylize: the library function and the command line end to end."""
import gc
import io
import os
import sys
import weakref

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import cli
from magenta_style import config
from magenta_style.inference import style_maps
from magenta_style.inference import stylize_lib
from magenta_style.inference import stylizer
from magenta_style.inference import tiling
from magenta_style.media import color
from magenta_style.media import images
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style import stylize

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STYLES = 3


@pytest.fixture(scope="module")
def native_checkpoint(tmp_path_factory):
    """A tiny (alpha 0.25, 3 styles) native checkpoint dir whose styles really differ."""
    model_config = config.ModelConfig(num_styles=NUM_STYLES, alpha=0.25)
    model = transformer.build_transformer(model_config)
    rng = np.random.default_rng(1)
    for weight in model.weights:
        name = weight.path
        scale = 0.5 if ("gamma" in name or "beta" in name) else 0.1
        value = rng.normal(0.0, scale, weight.shape)
        if "gamma" in name:
            value += 1.0
        weight.assign(value.astype(np.float32))
    directory = str(tmp_path_factory.mktemp("native_ckpt"))
    checkpoints.save_model(model, model_config, directory)
    return directory


@pytest.fixture(scope="module")
def loaded(native_checkpoint):
    return checkpoints.load_model(native_checkpoint)


def _write_rgb(path, height=13, width=21, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, [height, width, 3], dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _expected_uint8(model, rgb, weights):
    """What the CLI should write: the model's output, clipped and rounded to 8 bits."""
    out = model(tf.constant(rgb[None], tf.float32), tf.constant([weights], tf.float32))
    return images.to_uint8(out.numpy()[0]).astype(int)


def _run(argv, capsys):
    code = stylize.main(["stylize"] + argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_lines(err):
    return [line for line in err.splitlines() if line.startswith("stylize: error:")]


# ---- parity with Magenta through the command line ----------------------------------


def test_cli_parity_with_magenta(fixtures_dir, tmp_path, capsys):
    case = fixtures_dir / "magenta" / "nstyle_a05_s3"
    common = [f"--checkpoint={case / 'model.ckpt'}", f"--input_image={case / 'content.png'}",
              f"--output_dir={tmp_path}"]
    code, _, err = _run(common + ["--which_styles=[0,1,2]"], capsys)
    assert code == 0, err
    code, _, err = _run(common + ["--which_styles={0:0.2,2:0.8}"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == [
        "content_0.png", "content_0_200_2_800.png", "content_1.png", "content_2.png"]

    expected_styles = np.load(case / "expected_styles.npy")
    expected_mixture = np.load(case / "expected_mixture.npy")
    pairs = [(f"content_{i}.png", expected_styles[i]) for i in range(3)]
    pairs.append(("content_0_200_2_800.png", expected_mixture[0]))
    for name, expected in pairs:
        written = np.asarray(Image.open(tmp_path / name)).astype(int)
        reference = np.round(np.clip(expected, 0, 1) * 255).astype(int)
        assert written.shape == (96, 128, 3)
        assert np.abs(written - reference).max() <= 1, name


# ---- behaviour with a tiny native checkpoint ---------------------------------------


def test_default_writes_every_style_at_input_size(native_checkpoint, loaded, tmp_path, capsys):
    pixels = _write_rgb(tmp_path / "photo.png", height=13, width=21)
    out = tmp_path / "out"
    code, _, err = _run([f"--checkpoint={native_checkpoint}",
                         f"--input_image={tmp_path / 'photo.png'}", f"--output_dir={out}"],
                        capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["photo_0.png", "photo_1.png", "photo_2.png"]
    model, _ = loaded
    results = []
    for style in range(NUM_STYLES):
        written = Image.open(out / f"photo_{style}.png")
        assert written.mode == "RGB" and written.size == (21, 13)
        expected = _expected_uint8(model, pixels / 255.0, np.eye(NUM_STYLES)[style])
        assert np.abs(np.asarray(written).astype(int) - expected).max() <= 1
        results.append(np.asarray(written))
    # The styles really differ, so a wrong weight row would be caught.
    assert np.abs(results[0].astype(int) - results[1]).mean() > 2


def test_mix_output_name_and_values(native_checkpoint, loaded, tmp_path, capsys):
    pixels = _write_rgb(tmp_path / "c.png", 16, 24)
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}/c.png",
                         f"--output_dir={tmp_path}/o", "--which_styles={2:0.7, 0:0.3}"], capsys)
    assert code == 0, err
    assert os.listdir(tmp_path / "o") == ["c_0_300_2_700.png"]
    expected = _expected_uint8(loaded[0], pixels / 255.0, [0.3, 0.0, 0.7])
    written = np.asarray(Image.open(tmp_path / "o" / "c_0_300_2_700.png")).astype(int)
    assert np.abs(written - expected).max() <= 1


def test_alpha_is_put_back(native_checkpoint, loaded, tmp_path, capsys):
    rgba = np.random.default_rng(3).integers(0, 256, [15, 18, 4], dtype=np.uint8)
    rgba[:5, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "logo.png")
    code, _, err = _run([f"--checkpoint={native_checkpoint}",
                         f"--input_image={tmp_path / 'logo.png'}", f"--output_dir={tmp_path}/o",
                         "--which_styles=[1]"], capsys)
    assert code == 0, err
    written = Image.open(tmp_path / "o" / "logo_1.png")
    assert written.mode == "RGBA" and written.size == (18, 15)
    written = np.asarray(written).astype(int)
    np.testing.assert_array_equal(written[..., 3], rgba[..., 3])
    # The RGB is the stylized RGB of the input (alpha does not leak into the model).
    expected = _expected_uint8(loaded[0], rgba[..., :3] / 255.0, [0, 1, 0])
    assert np.abs(written[..., :3] - expected).max() <= 1


def test_bad_file_among_many(native_checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_rgb(inputs / "a.png", seed=1)
    (inputs / "b.png").write_text("not really a png")
    _write_rgb(inputs / "c.jpg", seed=2)
    out = tmp_path / "out"
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={inputs}",
                         f"--output_dir={out}", "--which_styles=[0,2]"], capsys)
    assert code == 1
    errors = _error_lines(err)
    assert errors == [f"stylize: error: {inputs / 'b.png'}: not an image "
                      "(or a format Pillow cannot read)"]
    assert "Traceback" not in err
    assert "3/3 images" in err  # progress, one line per step when stderr is not a terminal
    assert "1 of 3 input(s) failed" in err
    assert sorted(os.listdir(out)) == ["a_0.png", "a_2.png", "c_0.png", "c_2.png"]


def test_glob_and_output_basename(native_checkpoint, tmp_path, capsys):
    for name in ("x1.png", "x2.png", "y.png"):
        _write_rgb(tmp_path / name, 8, 8)
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}/x*",
                         f"--output_dir={tmp_path}/o", "--which_styles=[0]",
                         "--output_basename=night"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "o")) == ["night_x1_0.png", "night_x2_0.png"]
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}/y.png",
                         f"--output_dir={tmp_path}/p", "--which_styles=[0]",
                         "--output_basename=night"], capsys)
    assert code == 0, err
    assert os.listdir(tmp_path / "p") == ["night_0.png"]


def test_output_format_jpg(native_checkpoint, tmp_path, capsys):
    _write_rgb(tmp_path / "a.png", 8, 12)
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}/a.png",
                         f"--output_dir={tmp_path}/o", "--which_styles=[0]",
                         "--output_format=jpg"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "o" / "a_0.jpg") as written:
        assert written.format == "JPEG" and written.size == (12, 8)


def test_never_overwrites_an_input(native_checkpoint, tmp_path, capsys):
    _write_rgb(tmp_path / "p.png", 8, 8, seed=1)
    _write_rgb(tmp_path / "p_0.png", 8, 8, seed=2)
    before = (tmp_path / "p_0.png").read_bytes()
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}",
                         f"--output_dir={tmp_path}", "--which_styles=[0]"], capsys)
    assert code == 1
    assert "would overwrite an input" in _error_lines(err)[0]
    assert (tmp_path / "p_0.png").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["p.png", "p_0.png", "p_0_0.png"]


def test_styles_split_into_batches(loaded, tmp_path):
    model, model_config = loaded
    pixels = _write_rgb(tmp_path / "a.png", 12, 16)
    # 3 styles in batches of 2: one call with 2 weight rows, one with 1.
    summary = stylize_lib.stylize_files(model, model_config, [str(tmp_path / "a.png")],
                                        str(tmp_path / "o"),
                                        stylizer.StylizeOptions(styles="[2,0,1]", batch_size=2))
    assert summary.failed == []
    assert summary.written == [str(tmp_path / "o" / f"a_{s}.png") for s in (2, 0, 1)]
    for style in range(NUM_STYLES):
        written = np.asarray(Image.open(tmp_path / "o" / f"a_{style}.png")).astype(int)
        expected = _expected_uint8(model, pixels / 255.0, np.eye(NUM_STYLES)[style])
        assert np.abs(written - expected).max() <= 1


# ---- usage errors: one line, exit 2, nothing written ---------------------------------


def _usage_cases(ckpt, image, out):
    base = [f"--checkpoint={ckpt}", f"--input_image={image}", f"--output_dir={out}"]
    return {
        "missing checkpoint": (base[1:], "--checkpoint is required"),
        "missing input": ([base[0], base[2]], "--input_image is required"),
        "unknown flag": (base + ["--wich_styles=[0]"], "wich_styles"),
        "positional": (base + ["extra"], "unexpected argument"),
        "malformed styles": (base + ["--which_styles=[0,"], "must end with ']'"),
        "nan weight": (base + ["--which_styles={0:nan}"], "finite"),
        "unknown style": (base + ["--which_styles=[0,3]"], "style 3 does not exist"),
        "num_styles disagrees": (base + ["--num_styles=4"], "--num_styles=4 disagrees"),
        "alpha disagrees": (base + ["--alpha=1.0"], "--alpha=1.0 disagrees"),
        "bad batch size": (base + ["--batch_size=0"], "batch_size"),
        "bad format": (base + ["--output_format=tiff"], "output_format"),
        "basename with dir": (base + ["--output_basename=a/b"], "plain file name"),
        "no input": ([base[0], f"--input_image={image}.missing", base[2]],
                     "no such file or directory"),
        "no checkpoint": ([f"--checkpoint={ckpt}/nothing"] + base[1:], "--checkpoint:"),
        "strength above 1": (base + ["--strength=1.5"], "--strength=1.5: must be a number in"),
        "strength negative": (base + ["--strength=-0.1"], "--strength=-0.1: must be"),
        "strength nan": (base + ["--strength=nan"], "--strength=nan: must be"),
        "strength inf": (base + ["--strength=inf"], "--strength=inf: must be"),
        "strength text": (base + ["--strength=half"], "strength"),
        "map without colors": (base + [f"--style_map={image}"], "needs --style_map_colors"),
        "colors without map": (base + ["--style_map_colors=#000:0"], "needs --style_map"),
        "blur without map": (base + ["--style_map_blur=2"], "--style_map_blur needs --style_map"),
        "map and which_styles": (base + [f"--style_map={image}", "--style_map_colors=#000:0",
                                         "--which_styles=[0]"], "cannot be combined"),
        "bad mapping": (base + [f"--style_map={image}", "--style_map_colors=#00:0"],
                        "is not a colour"),
        "mapping unknown style": (base + [f"--style_map={image}", "--style_map_colors=#000:0,"
                                          "#fff:{1:0.5,5:0.5}"], "style 5 does not exist"),
        "missing mask": (base + [f"--style_map={image}.missing", "--style_map_colors=#000:0"],
                         "--style_map:"),
        "negative blur": (base + [f"--style_map={image}", "--style_map_colors=#000:0",
                                  "--style_map_blur=-1"], "--style_map_blur=-1.0: must be"),
        "nan blur": (base + [f"--style_map={image}", "--style_map_colors=#000:0",
                             "--style_map_blur=nan"], "--style_map_blur=nan: must be"),
        "negative tile pixels": (base + ["--max_tile_pixels=-1"], "max_tile_pixels"),
        "tiny tiles": (base + ["--max_tile_pixels=1000"],
                       "--max_tile_pixels=1000 is too small for this model"),
        "bad tile statistics": (base + ["--tile_statistics=mean"], "tile_statistics"),
    }


@pytest.mark.parametrize("case", sorted(_usage_cases("c", "i", "o")))
def test_usage_errors(case, native_checkpoint, tmp_path, capsys):
    image = tmp_path / "a.png"
    _write_rgb(image, 8, 8)
    out = tmp_path / "out"
    argv, fragment = _usage_cases(native_checkpoint, image, out)[case]
    code, _, err = _run(argv, capsys)
    assert code == 2
    errors = _error_lines(err)
    assert len(errors) == 1 and fragment in errors[0], err
    assert "Traceback" not in err
    assert not out.exists() or os.listdir(out) == []


def test_output_dir_is_a_file(native_checkpoint, tmp_path, capsys):
    _write_rgb(tmp_path / "a.png", 8, 8)
    (tmp_path / "out").write_text("")
    code, _, err = _run([f"--checkpoint={native_checkpoint}", f"--input_image={tmp_path}/a.png",
                         f"--output_dir={tmp_path}/out"], capsys)
    assert code == 2 and "not a directory" in _error_lines(err)[0]


def test_help(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert "--which_styles" in out and "Exit status" in out


def test_subprocess_usage_error_has_no_traceback(run_command, tmp_path):
    result = run_command(
        [sys.executable, "-m", "magenta_style.stylize", "--checkpoint=x", "--input_image=y",
         f"--output_dir={tmp_path}", "--which_styles={0:0.5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [REPO_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "stylize: error: --which_styles={0:0.5: a mix must end with '}'")


# ---- library pieces --------------------------------------------------------------------


def test_no_retracing_for_new_sizes(loaded):
    model, model_config = loaded
    fn = stylizer.make_stylize_fn(model, model_config.num_styles)
    for height, width, batch in [(8, 8, 1), (13, 21, 2), (32, 20, 3)]:
        out = fn(tf.zeros([batch, height, width, 3]), tf.ones([batch, NUM_STYLES]) / 3)
        assert out.shape == (batch, height, width, 3)
    assert fn.experimental_get_tracing_count() == 1


def test_stylizers_on_one_model_share_a_trace_that_goes_with_the_model():
    model = transformer.build_transformer(config.ModelConfig(num_styles=2, alpha=0.25))
    config_ = config.ModelConfig(num_styles=2, alpha=0.25)
    photo = np.zeros([12, 10, 3], np.float32)
    first = stylizer.Stylizer(model, config_, stylizer.StylizeOptions(styles="[0]"))
    first(photo)
    again = stylizer.Stylizer(model, config_, stylizer.StylizeOptions(styles="[1]"))
    again(photo)
    assert again._fn is first._fn and first._fn.experimental_get_tracing_count() == 1
    other = stylizer.Stylizer(model, config_, stylizer.StylizeOptions(styles="[1]",
                                                                      strength=0.5))
    assert other._fn is not first._fn
    gone = weakref.ref(model)
    del model, first, again, other
    gc.collect()
    assert gone() is None


def test_output_basenames():
    assert stylize_lib.output_basenames(["d/a.png", "d/b.jpg"]) == ["a", "b"]
    assert stylize_lib.output_basenames(["d/a.png"], "x") == ["x"]
    assert stylize_lib.output_basenames(["d/a.png", "d/b.jpg"], "x") == ["x_a", "x_b"]
    assert stylize_lib.output_basenames(["d/a.png", "d/a.jpg", "d/c.png"]) == ["a_png", "a_jpg", "c"]
    assert stylize_lib.output_basenames(["d/a.png", "e/a.png"]) == ["a_png", "a_png_2"]


def test_library_reports_nan_output_and_continues(tmp_path):
    _write_rgb(tmp_path / "a.png", 8, 8)
    _write_rgb(tmp_path / "b.png", 8, 8)

    def broken_model(images_batch, weights):
        del weights
        return images_batch * np.float32("nan")

    errors, progress = [], []
    summary = stylize_lib.stylize_files(
        broken_model, config.ModelConfig(num_styles=2), [str(tmp_path / "a.png"),
                                                         str(tmp_path / "b.png")],
        str(tmp_path / "o"), stylizer.StylizeOptions(styles="[0,1]"), on_error=lambda p, m: errors.append((p, m)),
        on_progress=lambda done, total, path: progress.append((done, total)))
    assert summary.written == [] and len(summary.failed) == 2
    assert errors == summary.failed
    assert "NaN" in errors[0][1] and errors[0][1].startswith(str(tmp_path / "a.png"))
    assert progress == [(1, 2), (2, 2)]
    assert os.listdir(tmp_path / "o") == []


def test_library_rejects_unknown_style(loaded, tmp_path):
    model, model_config = loaded
    with pytest.raises(stylize.style_spec.StyleSpecError):
        stylize_lib.stylize_files(model, model_config, [], str(tmp_path),
                                  stylizer.StylizeOptions(styles="[5]"))


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = cli.Progress(4, stream, stylize.PROGRAM)
    progress.update(1, 4, "/x/a.png")
    progress.message("stylize: error: /x/b.png: broken")
    progress.update(4, 4, "/x/d.png")
    progress.close()
    text = stream.getvalue()
    assert "\r[#######" in text and "1/4 a.png" in text and "4/4 d.png" in text
    assert "\r\033[Kstylize: error: /x/b.png: broken\n" in text
    assert text.endswith("\n")
    quiet = Tty()
    cli.Progress(1, quiet, stylize.PROGRAM).update(1, 1, "a.png")
    assert quiet.getvalue() == ""


# ---- strength, colour preservation, style maps, tiling ---------------------------------


def _stylize_one(native_checkpoint, tmp_path, capsys, image_name, *flags):
    """Runs the CLI on one input; returns (code, stderr, {output name: int array})."""
    out = tmp_path / "out"
    code, _, err = _run([f"--checkpoint={native_checkpoint}",
                         f"--input_image={tmp_path / image_name}", f"--output_dir={out}",
                         *flags], capsys)
    written = {}
    if out.exists():
        written = {name: np.asarray(Image.open(out / name)).astype(int)
                   for name in os.listdir(out)}
    return code, err, written


def test_strength_zero_is_the_photo_and_half_is_in_between(native_checkpoint, tmp_path, capsys):
    pixels = _write_rgb(tmp_path / "p.png", 20, 28, seed=4).astype(int)
    runs = {}
    for strength, name in (("0", "p_1_s000.png"), ("0.5", "p_1_s500.png"), ("1", "p_1.png")):
        code, err, written = _stylize_one(native_checkpoint, tmp_path, capsys, "p.png",
                                          "--which_styles=[1]", f"--strength={strength}")
        assert code == 0, err
        runs[strength] = written[name]
    assert sorted(written) == ["p_1.png", "p_1_s000.png", "p_1_s500.png"]  # Nothing overwritten.
    assert np.abs(runs["0"] - pixels).max() <= 1
    full, half = runs["1"], runs["0.5"]
    assert np.abs(full - pixels).mean() > 20  # The style really changes the photo...
    # ...and half strength is clearly neither end.
    assert np.abs(half - pixels).mean() > 5 and np.abs(half - full).mean() > 5


def test_strength_matches_the_network(native_checkpoint, loaded, tmp_path, capsys):
    pixels = _write_rgb(tmp_path / "p.png", 16, 20, seed=5)
    code, err, written = _stylize_one(native_checkpoint, tmp_path, capsys, "p.png",
                                      "--which_styles={0:0.4,2:0.6}", "--strength=0.25")
    assert code == 0, err
    out = loaded[0](tf.constant(pixels[None] / 255.0, tf.float32), tf.constant([[0.4, 0, 0.6]]),
                    tf.constant([0.25]))
    expected = images.to_uint8(out.numpy()[0]).astype(int)
    assert np.abs(written["p_0_400_2_600_s250.png"] - expected).max() <= 1


def _yuv(rgb_uint8):
    return tf.image.rgb_to_yuv(np.asarray(rgb_uint8, np.float32) / 255.0).numpy()


def test_preserve_colors_keeps_the_content_chroma(native_checkpoint, tmp_path, capsys):
    # Mid-range colours, so that recolouring rarely needs clipping.
    rng = np.random.default_rng(6)
    pixels = rng.integers(60, 196, [18, 26, 3], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    code, err, plain = _stylize_one(native_checkpoint, tmp_path, capsys, "c.png",
                                    "--which_styles=[2]")
    assert code == 0, err
    code, err, written = _stylize_one(native_checkpoint, tmp_path, capsys, "c.png",
                                      "--which_styles=[2]", "--preserve_colors")
    assert code == 0, err
    assert sorted(written) == ["c_2.png", "c_2_pc.png"]
    kept, styled, content = _yuv(written["c_2_pc.png"]), _yuv(plain["c_2.png"]), _yuv(pixels)
    unclipped = np.all((written["c_2_pc.png"] > 0) & (written["c_2_pc.png"] < 255), axis=-1)
    assert unclipped.mean() > 0.5
    chroma_error = np.abs(kept[..., 1:] - content[..., 1:])[unclipped]
    assert chroma_error.max() < 3 / 255
    # The plain stylization has other colours, so the check above can fail.
    assert np.abs(styled[..., 1:] - content[..., 1:]).mean() > 10 * chroma_error.mean()
    # The luminance is the stylized one.
    assert np.abs(kept[..., 0] - styled[..., 0])[unclipped].max() < 3 / 255


def test_style_map_with_two_regions(native_checkpoint, loaded, tmp_path, capsys):
    height, width = 24, 96
    pixels = _write_rgb(tmp_path / "p.png", height, width, seed=7)
    mask = np.zeros([6, 24, 3], np.uint8)  # Any size: stretched to the photo.
    mask[:, 12:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, err, written = _stylize_one(native_checkpoint, tmp_path, capsys, "p.png",
                                      f"--style_map={tmp_path / 'mask.png'}",
                                      "--style_map_colors=#000:0,#fff:{1:1}")
    assert code == 0, err
    assert sorted(written) == ["p_map.png"]
    mapped = written["p_map.png"]

    model = loaded[0]
    weights = style_maps.style_map_weights(mask / 255.0, "#000:0,#fff:1", NUM_STYLES,
                                           (height, width))
    # Stretching the mask 4x (bilinear) leaves a short ramp at the seam.
    assert weights[:, :44, 0].min() == 1 and weights[:, 52:, 1].min() == 1
    expected = model(tf.constant(pixels[None] / 255.0, tf.float32), tf.constant(weights[None]))
    assert np.abs(mapped - images.to_uint8(expected.numpy()[0])).max() <= 1
    # Away from the seam each half is closer to its own style than to the other one (not
    # equal to it: the instance-norm statistics are the whole image's; measured ~0.6x).
    alone = [_expected_uint8(model, pixels / 255.0, np.eye(NUM_STYLES)[s]) for s in (0, 1)]
    for region, own, other in ((np.s_[:, :32], 0, 1), (np.s_[:, 64:], 1, 0)):
        distance_own = np.abs(mapped[region] - alone[own][region]).mean()
        distance_other = np.abs(mapped[region] - alone[other][region]).mean()
        assert distance_own < 0.8 * distance_other


def test_style_map_blur_strength_and_colors(native_checkpoint, loaded, tmp_path, capsys):
    pixels = _write_rgb(tmp_path / "p.png", 16, 24, seed=8)
    mask = np.zeros([16, 24], np.uint8)  # A grey-level mask.
    mask[:, 12:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    outputs = {}
    for blur in ("0", "4"):
        code, err, written = _stylize_one(
            native_checkpoint, tmp_path, capsys, "p.png", f"--style_map={tmp_path / 'mask.png'}",
            "--style_map_colors=0:0,255:2", f"--style_map_blur={blur}", "--strength=0.8",
            "--preserve_colors", f"--output_basename=b{blur}")
        assert code == 0, err
        outputs[blur] = written[f"b{blur}_map_s800_pc.png"]
    assert np.abs(outputs["0"] - outputs["4"]).mean() > 2  # The blur is used.
    rgb = tf.constant(pixels[None] / 255.0, tf.float32)
    weights = style_maps.style_map_weights(np.repeat(mask[..., None], 3, -1) / 255.0,
                                           "0:0,255:2", NUM_STYLES, (16, 24), blur=4.0)
    expected = color.preserve_colors(rgb, loaded[0](rgb, tf.constant(weights[None]),
                                                    tf.constant([0.8])))
    assert np.abs(outputs["4"] - images.to_uint8(expected.numpy()[0])).max() <= 1


def _tiled_run(native_checkpoint, tmp_path, capsys, *flags):
    tmp_path.mkdir()
    pixels = np.random.default_rng(9).integers(0, 256, [128, 280, 3], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    return _stylize_one(native_checkpoint, tmp_path, capsys, "big.png", "--which_styles=[1]",
                        "--strength=0.7", "--preserve_colors", *flags)


@pytest.mark.slow
def test_tiled_output_equals_untiled(native_checkpoint, loaded, tmp_path, capsys):
    model = loaded[0]
    # The smallest cores are 32 px; 64 px cores keep the test quick (10 tiles).
    tile_pixels = (64 + 2 * tiling.default_halo(model)) ** 2
    assert 128 * 280 > tile_pixels
    code, err, tiled = _tiled_run(native_checkpoint, tmp_path / "a", capsys,
                                  f"--max_tile_pixels={tile_pixels}")
    assert code == 0, err
    assert "tiled" in err and "tile steps" in err  # The tiled path really ran.
    code, err, untiled = _tiled_run(native_checkpoint, tmp_path / "b", capsys,
                                    "--max_tile_pixels=0")
    assert code == 0, err
    assert "tile steps" not in err
    name = "big_1_s700_pc.png"
    assert np.abs(tiled[name] - untiled[name]).max() <= 2


def test_per_file_tiling_error_keeps_going(loaded, tmp_path, monkeypatch):
    model, model_config = loaded
    _write_rgb(tmp_path / "a.png", 8, 8)
    Image.fromarray(np.zeros([160, 160, 3], np.uint8)).save(tmp_path / "big.png")

    def broken_tiling(*args, **kwargs):
        raise tiling.TilingError("no tiles today")

    monkeypatch.setattr(tiling, "stylize_tiled", broken_tiling)
    errors = []
    # 160x160 is above the smallest tile size and is tiled; 8x8 is not.
    summary = stylize_lib.stylize_files(
        model, model_config, [str(tmp_path / "big.png"), str(tmp_path / "a.png")],
        str(tmp_path / "o2"), stylizer.StylizeOptions(
            styles="[0]", max_tile_pixels=stylizer.min_tile_pixels(model)),
        on_error=lambda p, m: errors.append(m))
    assert errors == [f"{tmp_path / 'big.png'}: no tiles today"]
    assert summary.written == [str(tmp_path / "o2" / "a_0.png")]


def test_output_suffixes():
    spec = stylize.style_spec.parse("{2:0.7,0:0.3}")
    assert stylize_lib.output_suffixes(spec) == ["0_300_2_700"]
    assert stylize_lib.output_suffixes(stylize.style_spec.parse("[1,0]"), strength=0.25,
                                   preserve_colors=True) == ["1_s250_pc", "0_s250_pc"]
    assert stylize_lib.output_suffixes(style_map=True, strength=0.0) == ["map_s000"]
    assert stylize_lib.output_suffixes(style_map=True, preserve_colors=True) == ["map_pc"]


def test_no_retracing_with_maps_strength_and_colors(loaded):
    model, model_config = loaded
    fn = stylizer.make_stylize_fn(model, NUM_STYLES, style_map=True, strength=0.5,
                                 preserve_colors=True)
    for height, width, batch in [(8, 8, 1), (13, 21, 2)]:
        maps = tf.ones([batch, height, width, NUM_STYLES]) / 3
        images_batch = tf.random.uniform([batch, height, width, 3], seed=1)
        out = fn(images_batch, maps)
        expected = color.preserve_colors(
            images_batch, model(images_batch, maps, tf.fill([batch], 0.5)))
        np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
    assert fn.experimental_get_tracing_count() == 1


# ---- SavedModel exports -------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_base(native_checkpoint, tmp_path_factory):
    """An export base dir holding version 1 of the tiny checkpoint's SavedModel."""
    base = str(tmp_path_factory.mktemp("exports"))
    export_lib.export_checkpoint(native_checkpoint, base, warmup_size=0)
    return base


@pytest.mark.slow
def test_saved_model_matches_the_checkpoint(native_checkpoint, export_base, tmp_path, capsys):
    _write_rgb(tmp_path / "p.png", 14, 22, seed=10)
    mask = np.zeros([14, 22], np.uint8)
    mask[7:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    runs = [["--which_styles=[0,2]"], ["--which_styles={0:0.3,1:0.7}"],
            ["--which_styles=[1]", "--strength=0.5", "--preserve_colors"],
            [f"--style_map={tmp_path / 'mask.png'}", "--style_map_colors=0:0,255:{1:0.5,2:0.5}",
             "--style_map_blur=2", "--strength=0.75"]]
    outputs = {}
    # The export base resolves to its highest version, here "1"; the version dir itself
    # is tried with the first run only (loading a SavedModel takes a while).
    for source, path, count in (("ckpt", native_checkpoint, len(runs)),
                                ("base", export_base, len(runs)),
                                ("version", os.path.join(export_base, "1"), 1)):
        for i, flags in enumerate(runs[:count]):
            code, _, err = _run([f"--checkpoint={path}", f"--input_image={tmp_path / 'p.png'}",
                                 f"--output_dir={tmp_path / source}", f"--output_basename=r{i}"]
                                + flags, capsys)
            assert code == 0, err
        outputs[source] = {name: np.asarray(Image.open(tmp_path / source / name)).astype(int)
                           for name in os.listdir(tmp_path / source)}
    assert sorted(outputs["ckpt"]) == ["r0_0.png", "r0_2.png", "r1_0_300_1_700.png",
                                       "r2_1_s500_pc.png", "r3_map_s750.png"]
    assert sorted(outputs["base"]) == sorted(outputs["ckpt"])
    assert sorted(outputs["version"]) == ["r0_0.png", "r0_2.png"]
    for source in ("base", "version"):
        for name, written in outputs[source].items():
            assert np.abs(written - outputs["ckpt"][name]).max() <= 1, (source, name)


@pytest.mark.slow
def test_saved_model_refuses_tiling_flags(export_base, tmp_path, capsys):
    _write_rgb(tmp_path / "p.png", 8, 8)
    code, _, err = _run([f"--checkpoint={export_base}", f"--input_image={tmp_path / 'p.png'}",
                         f"--output_dir={tmp_path / 'o'}", "--max_tile_pixels=40000"], capsys)
    assert code == 2
    errors = _error_lines(err)
    assert len(errors) == 1 and "--max_tile_pixels need a checkpoint" in errors[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_load_stylizer_dispatch(native_checkpoint, export_base):
    model, _ = stylizer.load(native_checkpoint)
    assert stylizer.can_tile(model)
    fn, model_config = stylizer.load(export_base, num_styles=NUM_STYLES, alpha=0.25)
    assert not stylizer.can_tile(fn) and model_config.num_styles == NUM_STYLES
    with pytest.raises(checkpoints.CheckpointError, match="disagrees"):
        stylizer.load(export_base, num_styles=4)
