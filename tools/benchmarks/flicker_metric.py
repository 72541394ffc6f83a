"""Flicker (temporal instability) of stylized video, scored on a clip with known motion.

    python tools/benchmarks/flicker_metric.py --checkpoint=DIR[,DIR2,...] [--style=0] [--frames=16]
        [--size=96] [--shift=0,1] [--noise_stddev=0.01] [--margin=16]
    python tools/benchmarks/flicker_metric.py --content_video=in.mp4 --stylized_video=out.mp4

Synthetic mode (the default): a window pans over a still demo scene by --shift
(dy, dx) pixels per frame, with independent per-frame noise of --noise_stddev (what a
camera adds). Because the true motion is known, stylized frame t+1 is compared with
stylized frame t moved by the pan: the *warping error* (mean absolute difference,
[0, 1] units, --margin pixels left out at the borders). A perfectly stable stylizer
scores the content clip's own warping error (the noise); anything above is flicker
the network adds. One line per checkpoint, so runs trained with and without
`--stability_weight` compare directly.

Video-pair mode: for a real clip and its stylized version (no known motion), prints
the mean absolute difference of consecutive frames of each and their ratio.
"""
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from magenta_style.data import demo_images
from magenta_style.media import video
from magenta_style.networks import checkpoints

_CHECKPOINT = flags.DEFINE_list("checkpoint", [], "Checkpoints (comma-separated) to score.")
_STYLE = flags.DEFINE_integer("style", 0, "Style index.")
_FRAMES = flags.DEFINE_integer("frames", 16, "Frames in the synthetic clip.")
_SIZE = flags.DEFINE_integer("size", 96, "Side of each (square) frame.")
_SHIFT = flags.DEFINE_list("shift", ["0", "1"], "Pan per frame: dy,dx pixels.")
_NOISE = flags.DEFINE_float("noise_stddev", 0.01, "Per-frame sensor noise ([0, 1] units).")
_MARGIN = flags.DEFINE_integer("margin", 16, "Border pixels left out of the comparison.")
_SCENE = flags.DEFINE_integer("scene", 0, "Demo content scene index (demo_images).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")
_CONTENT_VIDEO = flags.DEFINE_string("content_video", None, "Video-pair mode: the original.")
_STYLIZED_VIDEO = flags.DEFINE_string("stylized_video", None, "Video-pair mode: stylized.")


def synthetic_clip(frames, size, shift, noise_stddev, scene=0, seed=0):
    """The panning demo clip: float32 [frames, size, size, 3]."""
    dy, dx = shift
    side = size + max(dy, dx) * (frames - 1)
    canvas = demo_images.content_image(scene, size=side, seed=seed)
    return video.panning_clip(canvas, frames, (size, size), shift, noise_stddev, seed)


def score(model, clip, style, shift, margin, batch_size=8):
    """Stylizes `clip` and returns (warping error, temporal difference) of the result."""
    outputs = []
    for start in range(0, len(clip), batch_size):
        batch = clip[start:start + batch_size]
        outputs.append(model(tf.constant(batch), tf.fill([len(batch)], style)).numpy())
    stylized = np.concatenate(outputs)
    return video.warping_error(stylized, shift, margin), video.temporal_difference(stylized)


def _read_frames(path):
    import av
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
                        ).astype(np.float32) / 255.0


def main(argv):
    del argv
    if _CONTENT_VIDEO.value or _STYLIZED_VIDEO.value:
        content = _read_frames(_CONTENT_VIDEO.value)
        stylized = _read_frames(_STYLIZED_VIDEO.value)
        c, s = video.temporal_difference(content), video.temporal_difference(stylized)
        print(f"temporal difference: content {c:.5f}, stylized {s:.5f}, ratio {s / c:.3f}")
        return
    if not _CHECKPOINT.value:
        raise app.UsageError("give --checkpoint (or --content_video and --stylized_video)")
    shift = tuple(int(v) for v in _SHIFT.value)
    clip = synthetic_clip(_FRAMES.value, _SIZE.value, shift, _NOISE.value, _SCENE.value,
                          _SEED.value)
    print(f"clip: {_FRAMES.value} frames of {_SIZE.value}px, pan {shift} px/frame, noise "
          f"{_NOISE.value}, margin {_MARGIN.value}")
    print(f"content: warping error {video.warping_error(clip, shift, _MARGIN.value):.5f}, "
          f"temporal difference {video.temporal_difference(clip):.5f}")
    for path in _CHECKPOINT.value:
        model, _ = checkpoints.load_model(path)
        warp, temporal = score(model, clip, _STYLE.value, shift, _MARGIN.value)
        print(f"{path}: warping error {warp:.5f}, temporal difference {temporal:.5f}")


if __name__ == "__main__":
    app.run(main)
