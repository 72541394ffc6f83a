"""bfloat16 compute vs float32 on real photos, in 8-bit grey levels.

    python tools/benchmarks/bf16_accuracy.py --checkpoint=CKPT [--images='../shared/data/content/*.jpg']
        [--max_side=768]

Stylizes every image (longer side resized to at most --max_side) in every style with
the float32 network and with `transformer.with_compute_dtype(model, "bfloat16")`,
rounds both outputs to 8 bits as a PNG would, and prints |difference| in grey levels
(0-255): max, mean and 99th percentile per image and style, then over all of them.
"""
import argparse
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style.networks import checkpoints  # noqa: E402
from magenta_style.networks import transformer  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", default=os.path.join(
        os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")), "..", "shared", "data",
        "content", "*.jpg"))
    p.add_argument("--max_side", type=int, default=768)
    a = p.parse_args(argv[1:])
    model, model_config = checkpoints.load_model(a.checkpoint)
    fast = transformer.with_compute_dtype(model, "bfloat16")
    signature = [tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([1], tf.int32)]
    f32 = tf.function(model.__call__, input_signature=signature)
    b16 = tf.function(fast.__call__, input_signature=signature)
    errors = []
    for path in sorted(glob.glob(a.images)):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        height, width = image.shape[:2]
        scale = min(1.0, a.max_side / max(height, width))
        if scale < 1:
            image = tf.image.resize(image, [round(height * scale), round(width * scale)],
                                    antialias=True)
        x = tf.cast(image, tf.float32)[None] / 255.0
        for style in range(model_config.num_styles):
            ids = tf.constant([style])
            ref = np.round(f32(x, ids).numpy() * 255.0)
            got = np.round(b16(x, ids).numpy() * 255.0)
            e = np.abs(ref - got).ravel()
            errors.append(e)
            print(f"{os.path.basename(path)} {x.shape[1]}x{x.shape[2]} style {style}: max "
                  f"{e.max():.0f}, mean {e.mean():.2f}, p99 {np.percentile(e, 99):.0f}",
                  flush=True)
    e = np.concatenate(errors)
    print(f"all {len(errors)} image-styles: max {e.max():.0f}, mean {e.mean():.2f}, p99 "
          f"{np.percentile(e, 99):.0f} grey levels")


if __name__ == "__main__":
    main(sys.argv)
