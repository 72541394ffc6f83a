"""Content pipelines: determinism by global index, sharding, preprocessing, bad images."""
import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import pipeline as data
from magenta_style.media import images as images_lib

SIZE = 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    for i in range(5):
        images_lib.save_image_atomic(root / f"img{i}.png",
                                     demo_images.content_image(i, 24 + 4 * i))
    return root


def _config(spec, **kw):
    return config_lib.DataConfig(style_dataset_file="unused", content_images=str(spec),
                                 image_size=SIZE, **kw)


def _batches(dataset, n):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(n)]


class FakeContext:
    """The parts of tf.distribute.InputContext the pipeline uses."""

    def __init__(self, num_pipelines, pipeline_id, num_replicas):
        self.num_input_pipelines = num_pipelines
        self.input_pipeline_id = pipeline_id
        self.num_replicas_in_sync = num_replicas

    def get_per_replica_batch_size(self, global_batch_size):
        return global_batch_size // self.num_replicas_in_sync


def test_static_shapes_and_ranges(folder):
    source = data.resolve_content_source(_config(folder))
    assert source.kind == "files" and len(source.paths) == 5
    ds = data.make_dataset_fn(source, _config(folder), 4, num_styles=3, seed=1,
                              stability_stddev=0.1)(None)
    spec = ds.element_spec
    assert spec["image"].shape == (4, SIZE, SIZE, 3)
    assert spec["noise"].shape == (4, SIZE, SIZE, 3)
    assert all(s.shape.is_fully_defined() for s in spec.values())
    (batch,) = _batches(ds, 1)
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1
    assert set(batch["label"]) <= {0, 1, 2}
    np.testing.assert_array_equal(batch["index"], [0, 1, 2, 3])
    assert 0.05 < batch["noise"].std() < 0.15


def test_same_seed_same_stream_and_resume_from_any_step(folder):
    source = data.resolve_content_source(_config(folder))
    make = lambda start, seed=1: data.make_dataset_fn(  # noqa: E731
        source, _config(folder, random_crop=True, random_flip=True), 4, 3, seed=seed,
        start_index=start)(None)
    full = _batches(make(0), 4)
    again = _batches(make(0), 4)
    resumed = _batches(make(8), 2)  # Step 2 of a global batch of 4.
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(full[2:], resumed):
        for key in ("image", "label", "index"):
            np.testing.assert_array_equal(a[key], b[key])
    other = _batches(make(0, seed=2), 1)[0]
    assert not np.array_equal(other["image"], full[0]["image"])
    # Every file appears once per epoch (5 files -> indices 0..4 are a permutation).
    labels = np.concatenate([b["label"] for b in full])
    assert len(set(labels.tolist())) > 1, "styles are drawn per example"


def test_pipelines_split_each_global_batch(folder):
    """2 pipelines x 1 replica each see exactly the halves of the 1-pipeline batches."""
    source = data.resolve_content_source(_config(folder))
    fn = data.make_dataset_fn(source, _config(folder), 4, 3, seed=5)
    whole = _batches(fn(None), 3)
    halves = [_batches(fn(FakeContext(2, i, 2)), 3) for i in range(2)]
    for step in range(3):
        for key in ("image", "label", "index"):
            joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
            np.testing.assert_array_equal(joined, whole[step][key])


def test_undecodable_images_are_skipped_and_counted(folder, tmp_path):
    for i in range(3):
        images_lib.save_image_atomic(tmp_path / f"good{i}.png", demo_images.content_image(i, 20))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    source = data.resolve_content_source(_config(tmp_path))
    assert len(source.paths) == 5
    ds = data.make_dataset_fn(source, _config(tmp_path), 3, 2, seed=0)(None)
    batches = _batches(ds, 4)  # 12 good examples = 4 epochs of 3 good files.
    # 2 bad files per epoch; those after the last kept example are not counted yet.
    assert 6 <= sum(int(b["skipped"].sum()) for b in batches) <= 8
    indices = np.concatenate([b["index"] for b in batches])
    assert len(set(indices.tolist())) == 12


def test_tfrecord_source(tmp_path):
    path = tmp_path / "content.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(3):
            encoded = tf.io.encode_png(tf.cast(demo_images.content_image(i, 20) * 255,
                                               tf.uint8)).numpy()
            key = "image/encoded" if i < 2 else "image_raw"
            feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())
    config = _config(path)
    source = data.resolve_content_source(config)
    assert source.kind == "records"
    batches = _batches(data.make_dataset_fn(source, config, 2, 4, seed=0)(None), 3)
    assert sum(int(b["skipped"].sum()) for b in batches) == 0
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), range(6))
    images = np.concatenate([b["image"] for b in batches])
    # 3 distinct records per pass: each appears twice in 6 examples.
    distinct = {img.tobytes() for img in images}
    assert len(distinct) == 3


def test_preprocess_is_magenta_resize_and_central_crop():
    image = tf.cast(tf.reshape(tf.range(40 * 60 * 3) % 251, [40, 60, 3]), tf.uint8)
    out = data.preprocess(image, 20)
    # Shorter side 40 -> 22, longer 60 -> 33; central 20x20 crop starts at (1, 6).
    resized = tf.raw_ops.ResizeBilinear(images=tf.cast(image, tf.float32)[None] / 255.0,
                                        size=[22, 33], align_corners=False,
                                        half_pixel_centers=False)[0]
    np.testing.assert_allclose(out.numpy(), resized[1:21, 6:26].numpy(), atol=1e-6)
    # Same result inside tf.function (the pipeline runs it traced).
    traced = tf.function(lambda x: data.preprocess(x, 20))(image)
    np.testing.assert_allclose(traced.numpy(), out.numpy(), atol=1e-6)


def test_resolve_errors(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.resolve_content_source(_config(tmp_path / "missing"))
    with pytest.raises(data.DataError, match="no image files"):
        data.resolve_content_source(_config(str(tmp_path / "*.jpg")))
    with pytest.raises(data.DataError, match="no train-"):
        data.resolve_content_source(config_lib.DataConfig(
            style_dataset_file="x", imagenet_data_dir=str(tmp_path)))
    with pytest.raises(config_lib.ConfigError, match="only one of"):
        config_lib.DataConfig(content_images="a", imagenet_data_dir="b")


def test_load_eval_images(folder):
    images, paths = data.load_eval_images(str(folder), 16, limit=3)
    assert images.shape == (3, 16, 16, 3) and len(paths) == 3


def test_tfds_source_needs_tensorflow_datasets(monkeypatch):
    import importlib.util  # pylint: disable=import-outside-toplevel
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "tensorflow_datasets" else real_find_spec(name, *a))
    with pytest.raises(data.DataError, match="--tfds_name=coco/2017 needs tensorflow-datasets"):
        data.resolve_content_source(config_lib.DataConfig(style_dataset_file="x",
                                                          tfds_name="coco/2017"))
