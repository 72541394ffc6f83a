"""magenta_style: multi-style image stylization (Dumoulin, Shlens, Kudlur 2016) in TF2/Keras.

Code map, top to bottom; a module imports only its own layer and those below it
(tests/test_package.py checks this):

- commands, `python -m magenta_style.<command>`: train, evaluate, stylize,
  stylize_video, export, optimize, create_style_dataset, demo (the local web app),
  export_tflite, serving_client (a TF Serving client), convert_magenta_checkpoint and
  export_magenta_checkpoint (Magenta's TF1 checkpoints to ours and back).
  Flags -> one frozen config -> library code.
- cli: the commands' shared flags, one-line usage errors and progress bars.
- training/: train_lib (the run, in phases), train_step (the Trainer: gradients,
  optimizer, the traced loop), objective (the losses, shared with evaluation),
  devices (logical CPUs, strategies, mixed precision), resume (the checkpoint to
  resume from, clean-up of killed saves), summaries, evaluate_lib, dirlock (one
  trainer per train_dir), style_cache (`train --style_images`: their style dataset,
  built once in the train_dir).
- serving/: export_lib (numbered SavedModel versions), signatures (StylizerModule,
  the signature table and its input specs), arbitrary_signatures, warmup, tflite (an
  export to TensorFlow Lite, its input guards), predict_client (REST/gRPC requests to TF
  Serving).
- optimization/: optimize_lib (per-image optimization of the pixels).
- inference/: stylizer (`load(path)` for any model, `StylizeOptions`, the one stylize
  path), stylize_lib (files in, files out), style_spec, style_maps, style_images (the
  arbitrary-style model's style images), live (the demo's inputs to StylizeOptions),
  tiling.
- data/: pipeline (content images), style_dataset (Magenta's TFRecords and Grams),
  style_pipeline (the arbitrary trainer's style images and augmentation), demo_images.
- networks/: layers, kernels (the layers' fused norm, mirror pad and convolution
  rewrites), transformer (Magenta's network), boe (BOE's generator), generators (the
  one builder), vgg (VGG-16/VGG-19 networks), vgg_weights (their layout and weight
  sources), losses, patch_loss, checkpoints, quality (HED's content-kept / style-taken
  scores), arbitrary (Magenta's arbitrary-style model: inception_v3 style predictor,
  batch_norm, the transformer with predicted norms), arbitrary_checkpoints,
  inception_weights (InceptionV3's starting weights for training).
- config: frozen configs, every default and config.json (standard library only).
- media/: images, video, fileio (atomic writes), limits (pixel caps), color.

Importing the package has no side effects; import the module you need, e.g.
`from magenta_style.networks import transformer`.
"""

__version__ = "0.1.0"
