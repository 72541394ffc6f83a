"""Procedural demo images: deterministic, in range, distinct, written atomically."""
import os

import numpy as np
from PIL import Image

from magenta_style.data import demo_images


def test_deterministic_and_in_range():
    for index in range(len(demo_images.CONTENT_NAMES)):
        a = demo_images.content_image(index, 40, seed=1)
        np.testing.assert_array_equal(a, demo_images.content_image(index, 40, seed=1))
        assert a.shape == (40, 40, 3) and a.dtype == np.float32
        assert 0.0 <= a.min() and a.max() <= 1.0
    for index in range(len(demo_images.STYLE_NAMES)):
        s = demo_images.style_image(index, 36, seed=1)
        np.testing.assert_array_equal(s, demo_images.style_image(index, 36, seed=1))
        assert s.shape == (36, 36, 3) and 0.0 <= s.min() and s.max() <= 1.0
    assert not np.array_equal(demo_images.content_image(1, 40, seed=1),
                              demo_images.content_image(1, 40, seed=2))


def test_images_differ_from_each_other():
    contents = [demo_images.content_image(i, 32) for i in range(len(demo_images.CONTENT_NAMES))]
    styles = [demo_images.style_image(i, 32) for i in range(len(demo_images.STYLE_NAMES))]
    for group in (contents, styles):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                assert np.abs(group[i] - group[j]).mean() > 0.05, (i, j)
    # Styles are textures: strong local contrast (the stripes, dots, ... are visible).
    for style in styles:
        assert np.abs(np.diff(style, axis=1)).mean() > 0.02


def test_write_demo_images(tmp_path):
    contents, styles = demo_images.write_demo_images(tmp_path, num_content=2, num_styles=3,
                                                     content_size=24, style_size=32, seed=4)
    assert [p.rsplit("/", 1)[1] for p in contents] == ["00_sunset.png", "01_blocks.png"]
    assert len(styles) == 3
    with Image.open(styles[2]) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
        pixels = np.asarray(image, np.float32) / 255.0
    np.testing.assert_allclose(pixels, demo_images.style_image(2, 32, seed=4),
                               atol=0.5 / 255 + 1e-6)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_prepare_demo_data_reports_progress_and_rebuilds_for_other_weights(tmp_path):
    lines = []
    small = dict(image_size=32, num_training=2)  # What is drawn does not matter here.
    content, dataset = demo_images.prepare_demo_data(tmp_path, "standin:0", num_styles=2,
                                                     log=lines.append, **small)
    styles = [line for line in lines if line.startswith("demo data: style ")]
    assert len(styles) == 2 and "1/2 (stripes)" in styles[0]  # No silent Gram phase.
    built = os.path.getmtime(dataset)
    lines.clear()
    assert demo_images.prepare_demo_data(tmp_path, "standin:0", num_styles=2,
                                         log=lines.append, **small) == (content, dataset)
    assert lines == [f"demo data: reusing {tmp_path}"]
    # Data made with other VGG weights must not be reused silently: its Grams differ.
    lines.clear()
    os.utime(dataset, (built - 10, built - 10))
    demo_images.prepare_demo_data(tmp_path, "standin:1", num_styles=2, log=lines.append,
                                  **small)
    assert not any("reusing" in line for line in lines)
    assert os.path.getmtime(dataset) > built - 10


def test_photo_like_images_are_deterministic_in_range_and_varied():
    a = demo_images.photo_like_image(3, 40, seed=1)
    assert a.shape == (40, 40, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, demo_images.photo_like_image(3, 40, seed=1))
    assert not np.array_equal(a, demo_images.photo_like_image(3, 40, seed=2))
    scenes = [demo_images.photo_like_image(i, 40) for i in range(8)]
    for i in range(len(scenes)):
        for j in range(i + 1, len(scenes)):
            assert np.abs(scenes[i] - scenes[j]).mean() > 0.05, (i, j)
    for scene in scenes:  # Structure, not a flat field or noise only: edges stand out.
        steps = np.abs(np.diff(scene.mean(-1), axis=1))
        assert np.percentile(steps, 99) > 4 * np.median(steps), steps.max()


def test_write_training_images(tmp_path):
    paths = demo_images.write_training_images(tmp_path, count=3, size=24, seed=2)
    assert [os.path.basename(p) for p in paths] == [
        "photo_0000.png", "photo_0001.png", "photo_0002.png"]
    with Image.open(paths[1]) as image:
        pixels = np.asarray(image, np.float32) / 255.0
    np.testing.assert_allclose(pixels, demo_images.photo_like_image(1, 24, seed=2),
                               atol=0.5 / 255 + 1e-6)


def test_prepare_demo_data_draws_training_photos_for_the_training_size(tmp_path):
    training, _ = demo_images.prepare_demo_data(tmp_path, "standin:0", num_styles=1,
                                                log=lambda _: 0, image_size=32, num_training=3)
    assert training == str(tmp_path / demo_images.TRAINING_DIR)
    assert sorted(os.listdir(training)) == ["photo_0000.png", "photo_0001.png",
                                            "photo_0002.png"]
    with Image.open(os.path.join(training, "photo_0000.png")) as image:
        assert image.size == (34, 34)  # The crop size plus Magenta's resize margin.
    # The grid's six named scenes stay in content/.
    assert len(os.listdir(tmp_path / demo_images.CONTENT_DIR)) == 6
    # Another size and count: redrawn, and no photo of the old set stays behind.
    demo_images.prepare_demo_data(tmp_path, "standin:0", num_styles=1, log=lambda _: 0,
                                  image_size=40, num_training=2)
    assert sorted(os.listdir(training)) == ["photo_0000.png", "photo_0001.png"]
    with Image.open(os.path.join(training, "photo_0001.png")) as image:
        assert image.size == (42, 42)
