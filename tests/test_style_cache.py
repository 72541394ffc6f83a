"""`train --style_images`: the style dataset built and cached in the train_dir
(training/style_cache.py), rebuilt when an input changes, reused otherwise."""
import json
import os
import pathlib
import shlex

import numpy as np
import pytest

from magenta_style import cli
from magenta_style import train
from magenta_style.data import demo_images
from magenta_style.data import style_dataset
from magenta_style.training import style_cache
from magenta_style.training import train_lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def _styles(root, count=2, size=32):
    folder = root / "my_styles"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        demo_images.images.save_image_atomic(str(folder / f"style_{i}.png"),
                                             demo_images.style_image(i, size))
    return folder


def _cached(train_dir):
    return sorted(p.name for p in pathlib.Path(train_dir).iterdir()
                  if p.name.startswith(style_cache.PREFIX))


def _ensure(train_dir, text, vgg="standin:0", size=0):
    lines = []
    path, built = style_cache.ensure_style_dataset(str(train_dir), text, vgg, size,
                                                   progress=lines.append)
    return path, built, lines


def test_built_once_reused_then_rebuilt_when_an_input_changes(tmp_path):
    folder = _styles(tmp_path)
    train_dir = tmp_path / "train"
    pattern = str(folder / "*.png")
    first, built, lines = _ensure(train_dir, pattern)
    assert built and os.path.dirname(first) == str(train_dir)
    assert any("building" in line for line in lines)
    assert any("style image 2/2" in line for line in lines)
    info = style_dataset.read_style_dataset(first)
    assert info.num_styles == 2 and list(info.names) == ["style_0", "style_1"]
    assert info.grams is not None
    manifest = json.loads(pathlib.Path(first[:-len(".tfrecord")] + ".json").read_text())
    assert manifest["files"] == [str(folder / "style_0.png"), str(folder / "style_1.png")]
    assert manifest["vgg"]["source"] == "standin:0"
    stat = os.stat(first)

    # Same inputs: not rebuilt (same file, untouched), even when the images' mtimes change.
    for image in folder.iterdir():
        os.utime(image, ns=(stat.st_mtime_ns + 10**9, stat.st_mtime_ns + 10**9))
    again, built, lines = _ensure(train_dir, pattern)
    assert (again, built) == (first, False)
    assert any("reusing" in line for line in lines)
    assert not any("building" in line for line in lines)
    assert (os.stat(again).st_mtime_ns, os.stat(again).st_ino) == (stat.st_mtime_ns,
                                                                   stat.st_ino)

    # A changed image (same name and size, other pixels): rebuilt; the old file goes.
    demo_images.images.save_image_atomic(str(folder / "style_1.png"),
                                         demo_images.style_image(4, 32))
    changed, built, _ = _ensure(train_dir, pattern)
    assert built and changed != first and not os.path.exists(first)
    assert _cached(train_dir) == sorted([os.path.basename(changed),
                                         os.path.basename(changed)[:-len("tfrecord")] + "json"])
    new_grams = style_dataset.read_style_dataset(changed).grams
    assert not np.allclose(new_grams["vgg_16/conv2"][1], info.grams["vgg_16/conv2"][1])
    np.testing.assert_allclose(new_grams["vgg_16/conv2"][0], info.grams["vgg_16/conv2"][0])

    # A changed VGG source, or style image size: rebuilt.
    other_vgg, built, _ = _ensure(train_dir, pattern, vgg="standin:1")
    assert built and other_vgg != changed
    resized, built, _ = _ensure(train_dir, pattern, vgg="standin:1", size=40)
    assert built and resized != other_vgg
    assert min(style_dataset.read_style_dataset(resized, with_images=True)
               .images[0].shape[:2]) == 40


def test_a_vgg_file_is_keyed_by_its_path_size_and_mtime(tmp_path):
    weights = tmp_path / "vgg_16.ckpt"
    (tmp_path / "vgg_16.ckpt.index").write_bytes(b"index")
    (tmp_path / "vgg_16.ckpt.data-00000-of-00001").write_bytes(b"data")
    first = style_cache.vgg_fingerprint(str(weights))
    assert [os.path.basename(f[0]) for f in first["files"]] == [
        "vgg_16.ckpt.data-00000-of-00001", "vgg_16.ckpt.index"]
    (tmp_path / "vgg_16.ckpt.data-00000-of-00001").write_bytes(b"other data")
    assert style_cache.vgg_fingerprint(str(weights)) != first
    assert style_cache.vgg_fingerprint("standin:0") == {"source": "standin:0", "files": []}


@pytest.mark.parametrize("make, text, message", [
    (lambda root: None, "{root}/nothing/*.jpg", "no image files match"),
    (lambda root: (root / "broken.jpg").write_bytes(b"not an image"), "{root}/broken.jpg",
     "cannot read style image {root}/broken.jpg"),
])
def test_bad_style_images_are_one_line_errors_naming_the_file(tmp_path, make, text, message):
    make(tmp_path)
    train_dir = tmp_path / "train"
    with pytest.raises(style_cache.StyleCacheError) as raised:
        _ensure(train_dir, text.format(root=tmp_path))
    assert message.format(root=tmp_path) in str(raised.value)
    assert "\n" not in str(raised.value)
    # Nothing half-written.
    assert not train_dir.exists() or _cached(train_dir) == []


_REQUIRED = ["train", "--train_dir=/tmp/run", "--vgg_checkpoint=standin:0"]


def test_the_flag_is_a_data_config_field_and_excludes_a_style_dataset_file():
    args = train.parse_args([*_REQUIRED, "--style_images=a/*.jpg", "--style_image_size=64"])
    assert args.experiment.data.style_images == "a/*.jpg"
    assert args.experiment.data.style_image_size == 64
    assert args.experiment.data.style_dataset_file == ""
    with pytest.raises(cli.UsageError,
                       match="give only one of --style_dataset_file and --style_images"):
        train.parse_args([*_REQUIRED, "--style_images=a/*.jpg", "--style_dataset_file=s"])
    with pytest.raises(cli.UsageError, match="style_dataset_file or style_images is required"):
        train.parse_args(_REQUIRED)
    with pytest.raises(cli.UsageError, match="--style_image_size applies to --style_images"):
        train.parse_args([*_REQUIRED, "--style_dataset_file=s", "--style_image_size=64"])


def test_the_arbitrary_generator_reads_the_images_themselves(tmp_path):
    arbitrary = [*_REQUIRED[:1], f"--train_dir={tmp_path / 'train'}", *_REQUIRED[2:],
                 "--generator=arbitrary", "--inception_v3_checkpoint=random:0",
                 f"--style_images={tmp_path / '*.png'}"]
    experiment = train.parse_args(arbitrary).experiment
    # No style dataset is built for it: its style pipeline reads the images.
    assert train_lib._style_images(experiment, print) is experiment  # pylint: disable=protected-access
    assert not (tmp_path / "train").exists()
    with pytest.raises(cli.UsageError, match="--style_image_size sizes the style dataset"):
        train.parse_args([*arbitrary, "--style_image_size=64"])


@pytest.mark.slow
def test_train_builds_then_reuses_the_cached_style_dataset(tmp_path, capsys):
    """The README's command on tiny data: two runs in one train_dir (the second resumes)."""
    contents, _ = demo_images.write_demo_images(str(tmp_path / "data"), num_content=2,
                                                num_styles=0, content_size=48)
    folder = _styles(tmp_path)
    train_dir = tmp_path / "train"
    argv = ["train", f"--flagfile={REPO / 'configs' / 'tiny.cfg'}",
            f"--style_images={folder / '*.png'}", f"--content_images={','.join(contents)}",
            f"--train_dir={train_dir}", "--train_steps=2"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    assert "style dataset: building" in out and "reusing" not in out
    saved = json.loads((train_dir / "config.json").read_text())
    path = saved["train"]["data"]["style_dataset_file"]
    assert os.path.dirname(path) == str(train_dir)
    assert os.path.basename(path).startswith(style_cache.PREFIX)
    assert saved["train"]["data"]["style_images"] == ""
    assert saved["model"]["style_names"] == ["style_0", "style_1"]
    stat = os.stat(path)

    assert train.main(argv[:-1] + ["--train_steps=4"]) == 0
    out = capsys.readouterr().out
    assert "style dataset: reusing" in out and "building" not in out
    assert "step 4" in out
    assert (os.stat(path).st_mtime_ns, os.stat(path).st_ino) == (stat.st_mtime_ns,
                                                                 stat.st_ino)


def test_the_readme_command_is_a_valid_run(monkeypatch):
    monkeypatch.chdir(REPO)  # --flagfile=configs/... is relative to the repository.
    text = (REPO / "README.md").read_text()
    start = text.index("python -m magenta_style.train --flagfile=configs/base.cfg \\\n"
                       "        --style_images=")
    command = text[start:text.index("\n\n", start)].replace("\\\n", " ")
    argv = ["train"] + shlex.split(command)[3:]
    experiment = train.parse_args(argv).experiment
    assert experiment.data.style_images == "my_styles/*.jpg"
    assert experiment.data.style_dataset_file == ""
