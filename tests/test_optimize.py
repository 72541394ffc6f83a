"""Per-image optimization (seed 003, Gatys et al.): seed-systems.md 3.4 checks, the library,
the command's errors and report, --init=network, and VGG-19 from both weight formats.

CPU, 8-64 px, stand-in VGG weights: every check is a property that holds for any weights.
"""
import dataclasses
import json
import re
import types

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import style_dataset
from magenta_style.networks import checkpoints
from magenta_style.networks import losses
from magenta_style.networks import transformer
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights
from magenta_style.optimization import optimize_lib
from magenta_style import optimize
from magenta_style.training import objective
from magenta_style.training import train_lib

STANDIN = "standin:7"


@pytest.fixture(scope="module")
def vgg_net():
    return vgg.get_vgg16(STANDIN, "avg", "vgg_16", conv_end_points=True)


def _photo(size=32, seed=0):
    """A smooth procedural 'photo': gradients plus a disc, float32 [size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.06).astype(np.float32)
    rng = np.random.RandomState(seed)
    base = np.stack([x, y, 1 - x], -1) * 0.6 + 0.2 + 0.2 * disc[..., None]
    return np.clip(base + 0.02 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def _stripes(size=32):
    """A high-contrast texture: diagonal red/blue stripes."""
    y, x = np.mgrid[0:size, 0:size]
    band = ((x + y) // 4) % 2
    return np.where(band[..., None], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9]).astype(np.float32)


# Shallow layers keep the tests that are not about Gatys' layers quick to trace and run.
SHALLOW = dict(content_weights=(("vgg_16/conv2/conv2_1", 1.0),),
               style_weights=(("vgg_16/conv1/conv1_1", 1e2), ("vgg_16/conv2/conv2_1", 1e2)))
GATYS = dict(content_weights=None, style_weights=None)


def _cfg(**kw):
    base = dict(content_image="content.png", style_images=("style.png",), image_size=32,
                vgg_checkpoint=STANDIN, iterations=50, **SHALLOW)
    base.update(kw)
    return config_lib.OptimizeConfig(**base)


def _run(vgg_net, content=None, styles=None, **kw):
    content = _photo() if content is None else content
    styles = [_stripes()] if styles is None else styles
    return optimize_lib.optimize(_cfg(**kw), content=content, styles=styles, vgg_net=vgg_net)


# ------------------------------------------------------------------ 3.4 item 1: Gram


def test_gram_properties_and_layout_invariance():
    rng = np.random.RandomState(0)
    f = rng.standard_normal([1, 6, 5, 4]).astype(np.float32)
    gram = losses.gram_matrix(f).numpy()[0]
    assert gram.shape == (4, 4)
    np.testing.assert_allclose(gram, gram.T, rtol=1e-6)
    eig = np.linalg.eigvalsh(gram.astype(np.float64))
    assert eig.min() >= -1e-6 * np.trace(gram)
    flat = f[0].reshape(-1, 4)
    loop = np.array([[sum(flat[k, i] * flat[k, j] for k in range(30)) for j in range(4)]
                     for i in range(4)]) / 30
    np.testing.assert_allclose(gram, loop, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(gram), (flat ** 2).sum(0) / 30, rtol=1e-5)
    # The same spatial permutation of every channel: Gram unchanged, content loss not.
    perm = rng.permutation(30)
    shuffled = flat[perm].reshape(1, 6, 5, 4)
    np.testing.assert_allclose(losses.gram_matrix(shuffled).numpy()[0], gram, rtol=1e-6,
                               atol=1e-6)
    feats = {"vgg_16/conv1": tf.constant(f)}
    moved = {"vgg_16/conv1": tf.constant(shuffled)}
    content, _ = losses.content_loss(feats, moved, {"vgg_16/conv1": 1.0})
    assert float(content[0]) > 0.1


# ------------------------------------------------- 3.4 item 2: identities, gradients


@pytest.mark.parametrize("normalization", losses.NORMALIZATIONS)
def test_loss_identities(normalization):
    rng = np.random.RandomState(1)
    f = {"vgg_16/conv2": tf.constant(rng.standard_normal([1, 8, 8, 4]).astype(np.float32))}
    shuffled = {"vgg_16/conv2": tf.constant(
        f["vgg_16/conv2"].numpy().reshape(64, 4)[rng.permutation(64)].reshape(1, 8, 8, 4))}
    weights = {"vgg_16/conv2": 1.0}
    grams = {k: losses.gram_matrix(v) for k, v in f.items()}
    c, _ = losses.content_loss(f, f, weights, normalization)
    s, _ = losses.style_loss(grams, f, weights, normalization=normalization)
    s_shuf, _ = losses.style_loss(grams, shuffled, weights, normalization=normalization)
    assert float(c[0]) == 0.0 and float(s[0]) == 0.0
    assert float(s_shuf[0]) < 1e-10


def test_normalizations_match_the_papers_formulas():
    rng = np.random.RandomState(2)
    out = rng.standard_normal([1, 5, 6, 3]).astype(np.float32)
    target = rng.standard_normal([1, 5, 6, 3]).astype(np.float32)
    style = rng.standard_normal([1, 7, 4, 3]).astype(np.float32)
    name = "vgg_16/conv3/conv3_1"
    w = {name: 1.0}
    m, n = 30, 3
    f_out = out[0].reshape(m, n).astype(np.float64)
    f_tgt = target[0].reshape(m, n).astype(np.float64)
    f_sty = style[0].reshape(28, n).astype(np.float64)
    g_out = f_out.T @ f_out
    a = f_sty.T @ f_sty * (m / 28)  # The style's Gram at the output's M positions.
    grams = {name: losses.gram_matrix(style)}
    loss = {}
    for norm in losses.NORMALIZATIONS:
        c, _ = losses.content_loss({name: target}, {name: out}, w, norm)
        s, _ = losses.style_loss(grams, {name: out}, w, normalization=norm)
        loss[norm] = (float(c[0]), float(s[0]))
    np.testing.assert_allclose(loss["gatys"][0], 0.5 * ((f_out - f_tgt) ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(loss["gatys"][1],
                               ((g_out - a) ** 2).sum() / (4 * n ** 2 * m ** 2), rtol=1e-4)
    chw = n * m
    np.testing.assert_allclose(loss["johnson"][0], ((f_out - f_tgt) ** 2).sum() / chw, rtol=1e-5)
    np.testing.assert_allclose(loss["johnson"][1], ((g_out / chw - a / chw) ** 2).sum(),
                               rtol=1e-4)
    assert loss["johnson"] == loss["magenta"]  # The identity the docstring states.


@pytest.mark.parametrize("normalization", ["magenta", "gatys"])
def test_finite_difference_gradients(normalization):
    """Central differences on an 8x8x4 feature tensor agree with autodiff (both losses)."""
    rng = np.random.RandomState(3)
    name = "vgg_16/conv1"
    x0 = rng.standard_normal([1, 8, 8, 4]).astype(np.float32)
    target = {name: tf.constant(rng.standard_normal([1, 8, 8, 4]).astype(np.float32))}
    grams = {name: losses.gram_matrix(rng.standard_normal([1, 8, 8, 4]).astype(np.float32))}

    def value(v, kind):
        if kind == "content":
            loss, _ = losses.content_loss(target, {name: v}, {name: 1.0}, normalization)
        else:
            loss, _ = losses.style_loss(grams, {name: v}, {name: 1.0},
                                        normalization=normalization)
        return loss[0]

    for kind in ("content", "style"):
        x = tf.constant(x0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = value(x, kind)
        grad = tape.gradient(loss, x).numpy().ravel()
        picks = rng.choice(x0.size, 8, replace=False)
        numeric = []
        for idx in picks:
            bumped = [x0.ravel().copy() for _ in range(2)]
            bumped[0][idx] += 1e-2
            bumped[1][idx] -= 1e-2
            up, down = (float(value(tf.constant(b.reshape(x0.shape)), kind)) for b in bumped)
            numeric.append((up - down) / 2e-2)
        np.testing.assert_allclose(grad[picks], numeric, rtol=1e-2,
                                   atol=1e-3 * np.abs(grad).max(), err_msg=kind)


# ------------------------------------------------- 3.4 items 3 and 5: optimization


def _drop(result):
    first, last = result.report["scales"][0], result.report["scales"][-1]
    return 1 - last["end"]["total_loss"] / first["start"]["total_loss"]


def test_content_only_from_noise_lowers_the_loss_by_90_percent(vgg_net):
    result = _run(vgg_net, init="noise", content_weights=None, style_weights=(), seed=3)
    assert result.report["scales"][0]["iterations"] == 50
    assert _drop(result) >= 0.9
    assert result.report["trace_count"] == 1  # One trace for all 50 iterations.


def test_style_only_is_a_texture_not_a_copy(vgg_net):
    style = _stripes()
    result = _run(vgg_net, styles=[style], init="noise", content_weights=(), style_weights=None,
                  seed=3)
    assert _drop(result) >= 0.9
    image = result.image
    assert image.shape == (32, 32, 3) and image.min() >= 0 and image.max() <= 1
    corr = np.corrcoef(image.ravel(), style.ravel())[0, 1]
    assert abs(corr) < 0.5, corr


def test_combined_run_lowers_the_total_and_the_seed_fixes_the_image(vgg_net):
    a = _run(vgg_net, init="noise", seed=5, iterations=6, **GATYS)
    assert a.report["scales"][0]["end"]["total_loss"] < a.report["scales"][0]["start"][
        "total_loss"]
    assert len(a.history) == 6 and a.history[-1]["iteration"] == 6
    b = _run(vgg_net, init="noise", seed=5, iterations=5)
    np.testing.assert_array_equal(b.image, _run(vgg_net, init="noise", seed=5,
                                                iterations=5).image)
    c = _run(vgg_net, init="noise", seed=6, iterations=5)
    assert np.abs(b.image - c.image).max() > 1e-3


def test_adam_lowers_the_loss_and_keeps_pixels_in_range(vgg_net):
    result = _run(vgg_net, optimizer="adam", iterations=15, learning_rate=0.05, init="noise",
                  image_size=16)
    scale = result.report["scales"][0]
    assert scale["iterations"] == 15
    assert scale["end"]["total_loss"] < 0.5 * scale["start"]["total_loss"]
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_multiscale_report_coarse_to_fine(vgg_net):
    result = optimize_lib.optimize(_cfg(image_size=48, scales=2, iterations=4),
                                   content=_photo(40), styles=[_stripes()], vgg_net=vgg_net)
    scales = result.report["scales"]
    assert [s["size"] for s in scales] == [[24, 24], [48, 48]]
    for s in scales:
        assert s["iterations"] == 4
        assert "total_loss" in s["start"] and "total_loss" in s["end"]
        assert s["end"]["total_loss"] <= s["start"]["total_loss"]
    assert result.image.shape == (48, 48, 3)
    assert result.report["trace_count"] == 2  # One per scale.


def test_rectangular_output_and_style_mix(vgg_net):
    content = _photo(40)[:, :28]  # 40 x 28.
    two = [_stripes(), np.full([32, 32, 3], 0.5, np.float32)]
    result = optimize_lib.optimize(
        _cfg(image_size=24, iterations=2, style_images=("a.png", "b.png"), style_mix=(0.7, 0.3)),
        content=content, styles=two, vgg_net=vgg_net)
    assert result.image.shape == (24, 17, 3)
    with pytest.raises(optimize_lib.OptimizeError, match="style mix has 2 weights for 1"):
        optimize_lib.optimize(_cfg(style_images=("a.png", "b.png"), style_mix=(0.7, 0.3)),
                              content=content, styles=two[:1], vgg_net=vgg_net)


def test_mixing_blends_the_gram_targets(vgg_net):
    """A 0/1 mix is exactly the single style: the blend is of Gram targets."""
    two = [_stripes(), _photo(32, seed=9)]
    kw = dict(iterations=3, init="noise", style_images=("a.png", "b.png"), image_size=16)
    only_first = optimize_lib.optimize(_cfg(style_mix=(1.0, 0.0), **kw), content=_photo(),
                                       styles=two, vgg_net=vgg_net)
    single = optimize_lib.optimize(_cfg(iterations=3, init="noise", image_size=16),
                                   content=_photo(),
                                   styles=two[:1], vgg_net=vgg_net)
    np.testing.assert_allclose(only_first.image, single.image, atol=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_image(vgg_net):
    calls = tf.Variable(0)

    class Poisoned:
        architecture = "vgg_16"

        def __call__(self, x, up_to=None):
            out = vgg_net(x, up_to=up_to)
            calls.assign_add(1)
            bad = tf.cast(calls > 6, tf.float32) * np.float32(np.nan)
            return {k: v + tf.where(calls > 6, bad, 0.0) for k, v in out.items()}

    result = optimize_lib.optimize(_cfg(iterations=20, init="noise", image_size=16),
                                   content=_photo(), styles=[_stripes()], vgg_net=Poisoned())
    assert result.stopped and "non-finite loss at iteration" in result.stopped
    assert np.all(np.isfinite(result.image))
    assert result.report["scales"][0]["iterations"] < 20


def test_keyboard_interrupt_keeps_the_best_image(vgg_net):
    def stop(progress):
        if progress.iteration == 3:
            raise KeyboardInterrupt

    cfg = _cfg(iterations=20, init="noise", image_size=16)
    result = optimize_lib.optimize(cfg, content=_photo(), styles=[_stripes()],
                                   vgg_net=vgg_net, on_iteration=stop)
    assert result.stopped == "interrupted"
    assert result.report["scales"][0]["iterations"] == 3
    assert np.all(np.isfinite(result.image))


def test_layer_names_resolve_and_bad_ones_are_named():
    w = optimize_lib.qualify_layer_weights("conv4_2:1,relu1_2:2,conv3:3,pool1:4", "vgg_19")
    assert w == {"vgg_19/conv3": 3.0, "vgg_19/pool1": 4.0, "vgg_19/conv1/conv1_2": 2.0,
                 "vgg_19/conv4/conv4_2": 1.0}
    with pytest.raises(optimize_lib.OptimizeError, match="vgg_16/conv3/conv3_4"):
        optimize_lib.qualify_layer_weights("conv3_4:1", "vgg_16")
    with pytest.raises(optimize_lib.OptimizeError, match="unknown VGG end point 'conv9_1'"):
        optimize_lib.qualify_layer_weights("conv9_1:1", "vgg_16")


def test_recipes():
    cfg = _cfg(recipe="johnson", **GATYS)
    content, style, norm, tv = optimize_lib.resolved_losses(cfg)
    assert content == {"vgg_16/conv2/conv2_2": 1.0} and norm == "johnson" and tv > 0
    assert set(style) == {"vgg_16/conv1/conv1_2", "vgg_16/conv2/conv2_2",
                          "vgg_16/conv3/conv3_3", "vgg_16/conv4/conv4_3"}
    content, style, norm, _ = optimize_lib.resolved_losses(_cfg(vgg="vgg_19", **GATYS))
    assert content == {"vgg_19/conv4/conv4_2": 1.0} and norm == "gatys"
    assert style == {f"vgg_19/conv{b}/conv{b}_1": 200.0 for b in range(1, 6)}
    content, style, norm, _ = optimize_lib.resolved_losses(_cfg(recipe="magenta", **GATYS))
    assert content == losses.DEFAULT_CONTENT_WEIGHTS and style == losses.DEFAULT_STYLE_WEIGHTS


# ------------------------------------------------------------------ the command


def _write(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path):
    return (_write(tmp_path / "content.png", _photo(40)),
            _write(tmp_path / "style.png", _stripes()))


SHALLOW_FLAGS = ("--content_weights=conv2_1:1", "--style_weights=conv1_1:100,conv2_1:100")


def _main(capsys, *args):
    status = optimize.main(["optimize", *args])
    err = capsys.readouterr().err
    return status, err


def test_cli_writes_image_report_and_snapshots(files, tmp_path, capsys):
    content, style = files
    out, report = tmp_path / "out.png", tmp_path / "report.json"
    status, err = _main(capsys, f"--content_image={content}", f"--style_images={style}",
                        f"--output_image={out}", f"--vgg_checkpoint={STANDIN}",
                        "--image_size=24", "--iterations=4", "--scales=2", "--save_every=2",
                        *SHALLOW_FLAGS,
                        f"--report={report}", "--preserve_colors")
    assert status == 0, err
    assert "it/s" in err and "ETA" in err and "scale 2/2" in err
    with Image.open(out) as image:
        assert image.size == (24, 24)
    saved = json.loads(report.read_text())
    assert saved["settings"]["iterations"] == 4 and saved["settings"]["recipe"] == "gatys"
    assert [s["size"] for s in saved["scales"]] == [[12, 12], [24, 24]]
    for s in saved["scales"]:
        assert s["iterations"] == 4
        for key in ("start", "end"):
            assert {"total_loss", "total_content_loss", "total_style_loss"} <= set(s[key])
    assert (tmp_path / "out_s1_00002.png").exists() and (tmp_path / "out_s2_00004.png").exists()
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("case, expected", [
    ("missing", "content image: .*nothere.png"),
    ("corrupt", "content image: .*broken.png"),
    ("mix", "style_mix has 2 weights for 1 style image"),
    ("layer", "--style_weights: .*unknown VGG end point 'conv9_9'"),
    ("cap", "over the pixel cap"),
    ("vgg", "vgg_checkpoint is required"),
    ("small", "deepest layer needs at least 16 pixels"),
    ("flag", "Unknown command line flag 'bogus'"),
    ("arch", "--vgg must be vgg_16 or vgg_19, got 'vgg_18'"),
    ("recipe", "recipe must be one of gatys, johnson, magenta, hed, got 'picasso'"),
])
def test_cli_errors_are_one_line_exit_2(files, tmp_path, capsys, case, expected):
    content, style = files
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    args = {"content_image": content, "style_images": style, "vgg_checkpoint": STANDIN,
            "output_image": str(tmp_path / "o.png"), "image_size": "32", "iterations": "1"}
    if case == "missing":
        args["content_image"] = str(tmp_path / "nothere.png")
    elif case == "corrupt":
        args["content_image"] = str(tmp_path / "broken.png")
    elif case == "mix":
        args["style_mix"] = "0.5,0.5"
    elif case == "layer":
        args["style_weights"] = "conv9_9:1"
    elif case == "cap":
        args["max_pixels"], args["image_size"] = "2000", "64"  # Inputs 1600, output 4096.
    elif case == "vgg":
        del args["vgg_checkpoint"]
    elif case == "small":
        args["image_size"] = "8"
    elif case == "flag":
        args["bogus"] = "1"
    elif case == "arch":
        args["vgg"], args["style_weights"] = "vgg_18", "conv1_1:1"
    elif case == "recipe":
        args["recipe"] = "picasso"
    status, err = _main(capsys, *(f"--{k}={v}" for k, v in args.items()))
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("optimize: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "o.png").exists()


def test_cli_interrupt_writes_the_best_image(files, tmp_path, capsys, monkeypatch):
    content, style = files
    calls = []

    def interrupt(self, progress):
        calls.append(progress.iteration)
        if progress.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(optimize.IterationProgress, "__call__", interrupt)
    out = tmp_path / "out.png"
    status, err = _main(capsys, f"--content_image={content}", f"--style_images={style}",
                        f"--output_image={out}", f"--vgg_checkpoint={STANDIN}",
                        "--image_size=16", "--iterations=10", *SHALLOW_FLAGS)
    assert status == 130 and "best image so far" in err
    assert out.exists()


# ------------------------------------------------------------------ --init=network


@pytest.fixture(scope="module")
def network(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("net")
    _, _, dataset = write_demo_data(root, num_content=1, num_styles=2, content_size=32)
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25, style_names=("a", "b"))
    model = transformer.build_transformer(model_config)
    train_dir = root / "train"
    checkpoints.save_model(model, model_config, str(train_dir), step=1)
    experiment = config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(train_dir=str(train_dir)),
        data=config_lib.DataConfig(style_dataset_file=dataset),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"))
    config_lib.save_model_config(str(train_dir), model_config,
                                 extra={"train": experiment.to_dict()})
    return train_dir, dataset, experiment, root


def test_network_init_minimizes_the_networks_own_loss(network):
    train_dir, dataset, experiment, _ = network
    content = _photo(32)
    cfg = config_lib.OptimizeConfig(content_image="c.png", init=f"network:{train_dir}:b",
                                    image_size=32, iterations=3)
    result = optimize_lib.optimize(cfg, content=content)
    assert result.report["loss"]["source"].startswith("training loss of")
    assert result.report["loss"]["style_weights"] == dict(experiment.loss.style_weights)
    # The start is the network's stylization, scored by the trainer's own loss.
    model, _ = checkpoints.load_model(str(train_dir))
    info = style_dataset.read_style_dataset(dataset)
    trainer = train_lib.Trainer(model, vgg.build_vgg16("standin:0"), info.grams,
                                experiment.loss, global_batch_size=1, learning_rate=1e-3)
    total, _ = trainer.per_example_losses(tf.constant(content[None]), tf.constant([1]))
    start = result.report["scales"][0]["start"]["total_loss"]
    assert start == pytest.approx(float(total[0]), rel=1e-4)
    assert result.report["scales"][0]["end"]["total_loss"] < start
    # The baseline of the head-start measurement: the same loss, from the content image.
    from_content = optimize_lib.optimize(dataclasses.replace(cfg, iterations=1),
                                         content=content, start_from_content=True)
    assert from_content.report["loss"] == result.report["loss"]
    assert from_content.report["scales"][0]["start"]["total_loss"] != pytest.approx(start)


def test_evaluate_reports_the_amortization_gap(network, tmp_path):
    from magenta_style.training import evaluate_lib  # pylint: disable=import-outside-toplevel
    train_dir, dataset, _, root = network
    result = evaluate_lib.evaluate_checkpoint(
        str(train_dir), str(tmp_path), str(root / "content"), style_dataset_file=dataset,
        vgg_checkpoint="standin:0", image_size=32, max_images=1, grid=False,
        log=lambda _: 0, optimum_iterations=3)
    saved = json.loads((tmp_path / "losses_1.json").read_text())
    assert saved["optimum_iterations"] == 3
    for entry in saved["losses"]:
        # The optimum starts at the network's output, scored by the same loss.
        assert entry["optimum_start_total_loss"] == pytest.approx(entry["total_loss"], rel=1e-3)
        assert entry["optimum_total_loss"] < entry["total_loss"]
        assert entry["amortization_gap"] == pytest.approx(
            entry["total_loss"] / entry["optimum_total_loss"])
    assert result["losses"][0]["amortization_gap"] > 1
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_network_init_errors(network, tmp_path):
    train_dir, _, _, _ = network
    with pytest.raises(optimize_lib.OptimizeError, match="no style 'zebra'"):
        optimize_lib.optimize(config_lib.OptimizeConfig(
            content_image="c.png", init=f"network:{train_dir}:zebra", image_size=32),
            content=_photo())
    with pytest.raises(optimize_lib.OptimizeError, match="init network: .*nowhere"):
        optimize_lib.optimize(config_lib.OptimizeConfig(
            content_image="c.png", init=f"network:{tmp_path}/nowhere:0", image_size=32),
            content=_photo())


def test_iterations_to_reach():
    history = [{"scale": 0, "iteration": i + 1, "total_loss": v}
               for i, v in enumerate([9.0, 5.0, 3.0, 2.0])]
    assert optimize_lib.iterations_to_reach(history, 3.0) == 3
    assert optimize_lib.iterations_to_reach(history, 1.0) is None


# ------------------------------------------------------------------ VGG-19 loading


def _save_checkpoint(prefix, arrays):
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[n]) for n in names])
    return prefix


def test_vgg19_from_slim_checkpoint_keras_h5_and_standin(tmp_path):
    arrays = vgg_weights.standin_arrays(4, "vgg_19")
    assert len(arrays) == 32 and arrays["vgg_19/conv5/conv5_4/weights"].shape == (3, 3, 512, 512)
    images = tf.random.stateless_uniform([1, 32, 32, 3], seed=[1, 2])
    standin = vgg.build_vgg16("standin:4", architecture="vgg_19", conv_end_points=True)
    reference = standin(images)
    assert tuple(reference) == vgg.end_points("vgg_19", conv_end_points=True)
    slim = vgg.build_vgg16(_save_checkpoint(str(tmp_path / "vgg_19.ckpt"), arrays),
                           architecture="vgg_19", conv_end_points=True)
    net = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    for keras_name, scope in vgg_weights.keras_to_slim("vgg_19").items():
        kernel = arrays[f"{scope}/weights"]
        if keras_name == "block1_conv1":
            kernel = kernel[:, :, ::-1, :]  # Keras' Caffe weights take BGR.
        net.get_layer(keras_name).set_weights([kernel, arrays[f"{scope}/biases"]])
    h5 = str(tmp_path / "vgg19_notop.weights.h5")
    net.save_weights(h5)
    from_h5 = vgg.build_vgg16(h5, architecture="vgg_19", conv_end_points=True)
    for name in ("vgg_19/conv3/conv3_4", "vgg_19/conv5/conv5_1", "vgg_19/pool5"):
        np.testing.assert_allclose(slim(images)[name], reference[name], rtol=1e-6)
        np.testing.assert_allclose(from_h5(images)[name], reference[name], rtol=1e-4,
                                   atol=1e-4)
    # VGG-16 weights are not VGG-19 weights: the loader says so.
    bad = _save_checkpoint(str(tmp_path / "vgg_16.ckpt"), vgg_weights.standin_arrays(4))
    with pytest.raises(vgg_weights.VGGWeightsError, match="VGG-19 convolution variables"):
        vgg.build_vgg16(bad, architecture="vgg_19")


def test_vgg19_optimization_uses_the_papers_layer_names():
    net = vgg.get_vgg16("standin:4", "avg", "vgg_19", conv_end_points=True)
    result = optimize_lib.optimize(_cfg(vgg="vgg_19", iterations=1, **GATYS), content=_photo(),
                                   styles=[_stripes()], vgg_net=net)
    assert "style_loss/vgg_19/conv5/conv5_1" in result.report["scales"][0]["end"]


# ------------------------------------------------------------------ patch loss interface


class _FakePatchLoss:
    """Stands in for patch_loss.PatchStyleLoss with the agreed interface."""

    made = []

    def __init__(self, style_features, layer_weights, style_map, semantic_weight, patch_size):
        self.targets = {k: tf.reduce_mean(v, axis=[1, 2]) for k, v in style_features.items()}
        self.shapes = {k: tuple(v.shape) for k, v in style_features.items()}
        self.dtypes = {v.dtype for v in style_features.values()}
        self.layer_weights = dict(layer_weights)
        self.style_map = style_map
        self.semantic_weight = semantic_weight
        self.patch_size = patch_size
        self.calls = 0
        _FakePatchLoss.made.append(self)

    def __call__(self, output_features, content_map):
        self.calls += 1
        self.content_map_shape = None if content_map is None else tuple(content_map.shape)
        per_layer = {k: self.layer_weights[k] * tf.reduce_mean(tf.square(
            tf.reduce_mean(output_features[k], axis=[1, 2]) - t))
            for k, t in self.targets.items()}
        return tf.add_n(list(per_layer.values())), per_layer

    def usage(self):
        return {k: 7 for k in self.targets}


class _MapError(ValueError):
    pass


def _fake_patch_module():
    def load_semantic_map(path, image_hw):
        if "bad" in path:
            raise _MapError(f"semantic map {path}: broken")
        height, width = image_hw or (24, 40)
        return np.full([1, height, width, 3], 255.0, np.float32)

    def load_semantic_maps(style_path, style_hw, content_path, content_hw, **_):
        return load_semantic_map(style_path, style_hw), load_semantic_map(content_path,
                                                                          content_hw)

    return types.SimpleNamespace(PatchStyleLoss=_FakePatchLoss,
                                 load_semantic_map=load_semantic_map,
                                 load_semantic_maps=load_semantic_maps,
                                 SemanticMapError=_MapError)


def test_patch_style_loss_interface_and_doodle_mode(vgg_net, monkeypatch):
    monkeypatch.setattr(optimize_lib, "patch_loss", _fake_patch_module())
    _FakePatchLoss.made.clear()
    cfg = _cfg(style_loss="patch", iterations=3, style_semantic_map="s.png",
               content_semantic_map="c.png", semantic_weight=10.0, patch_size=5, **GATYS)
    result = optimize_lib.optimize(cfg, content=_photo(), styles=[_stripes()], vgg_net=vgg_net)
    loss = _FakePatchLoss.made[-1]
    assert loss.layer_weights == {"vgg_16/conv3/conv3_1": 25.0, "vgg_16/conv4/conv4_1": 25.0}
    assert loss.shapes["vgg_16/conv3/conv3_1"] == (1, 8, 8, 256)
    assert loss.dtypes == {tf.float32}
    assert loss.style_map.shape == (1, 32, 32, 3) and loss.semantic_weight == 10.0
    assert loss.patch_size == 5 and loss.content_map_shape == (1, 32, 32, 3)
    assert loss.calls == 1  # Called once, at trace time, inside the traced function.
    scale = result.report["scales"][0]
    assert scale["distinct_style_patches"] == {"vgg_16/conv3/conv3_1": 7,
                                               "vgg_16/conv4/conv4_1": 7}
    assert "patch_loss/vgg_16/conv4/conv4_1" in scale["end"]
    assert result.report["loss"]["content_weights"] == {"vgg_16/conv4/conv4_2": 10.0}
    # Doodle: a content map alone; no content loss, output at the map's size.
    doodle = optimize_lib.optimize(
        config_lib.OptimizeConfig(style_images=("s.png",), style_loss="patch",
                                  content_semantic_map="doodle.png", style_semantic_map="s.png",
                                  vgg_checkpoint=STANDIN, image_size=0, iterations=2),
        styles=[_stripes()], vgg_net=vgg_net)
    assert doodle.image.shape == (24, 40, 3)
    assert doodle.report["loss"]["content_weights"] == {}
    with pytest.raises(optimize_lib.OptimizeError, match="bad.png: broken"):
        optimize_lib.optimize(dataclasses.replace(cfg, content_semantic_map="bad.png"),
                              content=_photo(), styles=[_stripes()], vgg_net=vgg_net)


def test_patch_without_the_module_is_a_clear_error(vgg_net, monkeypatch):
    monkeypatch.setattr(optimize_lib, "patch_loss", None)
    with pytest.raises(optimize_lib.OptimizeError, match="patch_loss"):
        optimize_lib.optimize(_cfg(style_loss="patch"), content=_photo(), styles=[_stripes()],
                              vgg_net=vgg_net)


# ------------------------------------------------- 3.4 item 4: fast transfer works


def test_fast_transfer_network_trains_with_a_frozen_loss_network():
    model_config = config_lib.ModelConfig(num_styles=1, alpha=0.25)
    model = transformer.build_transformer(model_config)
    for size in ((32, 32), (36, 44), (33, 30)):  # Divisible by 4, and any size.
        out = model(tf.zeros([1, *size, 3]), tf.constant([0]))
        assert tuple(out.shape) == (1, *size, 3)
    loss_net = vgg.build_vgg16("standin:0")
    before = [w.numpy().copy() for w in loss_net.weights]
    grams = {name: losses.gram_matrix(loss_net(tf.constant(_stripes()[None]))[name]).numpy()
             for name in losses.DEFAULT_STYLE_WEIGHTS}
    trainer = train_lib.Trainer(model, loss_net, grams,
                                config_lib.LossConfig(vgg_checkpoint="standin:0"),
                                global_batch_size=2, learning_rate=1e-2)
    images = tf.constant(np.stack([_photo(16, 1), _photo(16, 2)]))
    labels = tf.constant([0, 0])
    totals = []
    for _ in range(4):
        gradients, _, total = trainer.compute_gradients(images, labels)
        totals.append(float(tf.reduce_mean(total)))
        trainer.optimizer.apply_gradients(zip(gradients, trainer.train_vars))
    assert totals[3] < totals[0]  # 3 Adam steps lower the perceptual loss.
    for w, b in zip(loss_net.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert not loss_net.trainable_weights
    # Inference is one forward pass: no variable changes, the same output twice.
    snapshot = [v.numpy().copy() for v in model.variables]
    first = model(images, labels)
    np.testing.assert_array_equal(first, model(images, labels))
    for v, s in zip(model.variables, snapshot):
        np.testing.assert_array_equal(v.numpy(), s)


# ------------------------------------------------------------------ --vgg for training


def test_training_vgg19_recomputes_grams_and_checks_layer_names(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="vgg_16/conv3 is not a layer of vgg_19"):
        config_lib.LossConfig(vgg="vgg_19")  # Magenta's default weights name vgg_16.
    loss = config_lib.LossConfig(vgg="vgg_19", content_weights=(("vgg_19/conv3", 1.0),),
                                 style_weights=(("vgg_19/conv2/conv2_1", 1.0),))
    assert objective.needs_conv_end_points(loss)
    net = vgg.get_vgg16("standin:4", "avg", "vgg_19", conv_end_points=True)
    style = [_stripes(16), _photo(16)]
    info = style_dataset.StyleDatasetInfo(
        num_styles=2, names=("a", "b"), images=tuple(style),
        grams={"vgg_16/conv1": np.zeros([2, 64, 64], np.float32)})
    grams = style_dataset.dataset_grams(net, info, dict(loss.style_weights))
    assert set(grams) == {"vgg_16/conv1", "vgg_19/conv2/conv2_1"}
    expected = losses.gram_matrix(net(tf.constant(style[1][None]))["vgg_19/conv2/conv2_1"])
    np.testing.assert_allclose(grams["vgg_19/conv2/conv2_1"][1], expected[0], rtol=1e-5)
