"""SavedModel export for TF Serving, TF Hub / Colab and TFLite: atomic numbered versions.

An export is `<export_base>/<version>/` (TF Serving only loads integer-named
version folders) holding the SavedModel of signatures.StylizerModule (its
signatures and what the loaded object offers are described there), its metadata
(`assets/config.json`, also in `assets.extra/`) and TF Serving warmup requests
(`assets.extra/tf_serving_warmup_requests`, warmup.py). A version is
written beside the others under a hidden name and renamed into place when
complete, and a base never mixes models (`check_same_model`). Reading an export
back is inference/stylizer.py's job (`stylizer.load`, `stylizer.read_metadata`).
"""
import dataclasses
import json
import os
import shutil
import tempfile

import tensorflow as tf

import magenta_style
from magenta_style import config as config_lib
from magenta_style.inference import stylizer
from magenta_style.inference import style_images
from magenta_style.media import limits
from magenta_style.networks import arbitrary
from magenta_style.networks import arbitrary_checkpoints
from magenta_style.networks import checkpoints
from magenta_style.networks import kernels
from magenta_style.networks import transformer
from magenta_style.serving import arbitrary_signatures
from magenta_style.serving import signatures
from magenta_style.serving import warmup

FORMAT_NAME = "magenta_style.saved_model"
FORMAT_VERSION = 1
METADATA_FILENAME = stylizer.METADATA_FILENAME


class ExportError(ValueError):
    """An export cannot be written where asked; the message says why (one line)."""


def build_metadata(model_config, extra=None):
    """The metadata dict saved with an export.

    Args:
      model_config: config.ModelConfig.
      extra: optional dict of further sections (e.g. "train" from a training dir's
        config.json); it cannot replace the keys written here.

    Returns:
      dict with "model" (ModelConfig.to_dict()), "format", "format_version",
      "magenta_style_version", "tensorflow_version", "signatures" and `extra`.
    """
    payload = dict(extra or {})
    payload.update({
        "model": model_config.to_dict(),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "magenta_style_version": magenta_style.__version__,
        "tensorflow_version": tf.__version__,
        "signatures": signatures.SIGNATURES,
    })
    return payload


def _model_identity(model_dict):
    """What must agree between versions of one export base: the model dict without names."""
    return {k: v for k, v in model_dict.items() if k != "style_names"}


def check_same_model(export_base, model_config):
    """Refuses to add `model_config` to a base whose versions hold a different model.

    TF Serving serves the largest version, so a version with another num_styles,
    alpha (or any other model setting) silently changes what every client gets and
    breaks their style_weights. Style names may differ (a retrained model).

    Raises:
      ExportError: an existing version differs or its metadata cannot be read; the
        message names the version and the difference.
    """
    wanted = _model_identity(model_config.to_dict())
    for version in stylizer.existing_versions(export_base):
        version_dir = os.path.join(export_base, str(version))
        if not tf.saved_model.contains_saved_model(version_dir):
            continue
        try:
            found = _model_identity(dict(stylizer.read_metadata(version_dir)["model"]))
        except (checkpoints.CheckpointError, KeyError, TypeError, ValueError) as e:
            raise ExportError(f"cannot compare with {version_dir}: {e}; pass "
                              "--allow_different_model to add a version anyway") from None
        if found != wanted:
            diff = ", ".join(f"{k} {found.get(k)!r} there, {wanted.get(k)!r} here"
                             for k in sorted(set(found) | set(wanted))
                             if found.get(k) != wanted.get(k))
            raise ExportError(
                f"{version_dir} holds a different model ({diff}); TF Serving would serve the "
                "new version to clients of the old one. Use another --export_dir, or pass "
                "--allow_different_model")


def export_saved_model(model, model_config, export_base, version=None, extra_metadata=None,
                       warmup_size=warmup.DEFAULT_WARMUP_SIZE,
                       model_name=warmup.DEFAULT_MODEL_NAME,
                       memory_budget_bytes=limits.DEFAULT_MEMORY_BUDGET_BYTES,
                       allow_different_model=False, module_factory=None,
                       signature_descriptions=None):
    """Exports `model` to `<export_base>/<version>/`, atomically.

    The SavedModel is written to a hidden temporary directory inside `export_base`
    (TF Serving skips names that are not integers) and renamed into place when
    complete, so a crash leaves no half-written version.

    Args:
      model: a built transformer.StyleTransferNetwork with float32 weights.
      model_config: config.ModelConfig of `model`.
      export_base: str, the model's base directory (created when missing).
      version: optional int >= 1; default: one more than the largest existing version
        (1 for an empty base).
      extra_metadata: optional dict of further metadata sections (e.g. {"train": ...}).
      warmup_size: int side of the warmup image, 0..warmup.MAX_WARMUP_SIZE
        (0/None: no warmup file).
      model_name: str, the model name put in the warmup requests.
      memory_budget_bytes: the memory one request may take; with the model's measured
        bytes per pixel it sets the pixel cap of every signature (`limits.max_pixels`),
        recorded in the metadata's "limits" section.
      allow_different_model: bool; False refuses a base whose versions hold another
        model (see `check_same_model`).
      module_factory: optional callable(metadata_json, metadata_path, max_pixels) ->
        the module to save (with `serving_signatures()`), for another kind of model (the
        arbitrary-style model, arbitrary_signatures.py); default the N-style
        StylizerModule. Warmup requests are written for the N-style signatures only.
      signature_descriptions: the metadata's "signatures" with `module_factory`.

    Returns:
      str, the version directory written.

    Raises:
      ExportError: the model has NaN or infinite weights, the version already exists,
        is not a positive integer, export_base is not a directory, warmup_size is out
        of range, or the base holds a different model.
    """
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"--export_dir={export_base} exists and is not a directory")
    bad = non_finite_weights(model)
    if bad:  # A diverged run: the export would answer every request with NaN (black).
        raise ExportError(f"the model has non-finite weights (NaN or infinity) in {len(bad)} "
                          f"variable(s), e.g. {bad[0]}; export an earlier checkpoint")
    if warmup_size and not 0 < warmup_size <= warmup.MAX_WARMUP_SIZE:
        raise ExportError(f"--warmup_size={warmup_size} must be in "
                          f"[0, {warmup.MAX_WARMUP_SIZE}]")
    if not allow_different_model:
        check_same_model(export_base, model_config)
    if version is None:
        version = max(stylizer.existing_versions(export_base), default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    final_dir = os.path.join(export_base, str(version))
    if os.path.exists(final_dir):
        raise ExportError(f"{final_dir} already exists; choose another --version (exports are "
                          "never overwritten)")
    os.makedirs(export_base, exist_ok=True)
    staging = tempfile.mkdtemp(dir=export_base, prefix=f".tmp-export-{version}-")
    try:
        _write_version(model, model_config, staging, final_dir, extra_metadata, warmup_size,
                       model_name, memory_budget_bytes, module_factory, signature_descriptions)
    except (OSError, tf.errors.OpError) as e:
        # A full disk or a directory made read-only mid-way: one line naming the export
        # (not the hidden staging file); the existing versions are untouched.
        raise ExportError(f"cannot write the export {final_dir}: "
                          f"{checkpoints.write_error_reason(e)}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def _write_version(model, model_config, staging, final_dir, extra_metadata, warmup_size,
                   model_name, memory_budget_bytes, module_factory, signature_descriptions):
    """export_saved_model's writing: the SavedModel in `staging`, renamed to final_dir."""
    # What the convolutions compute in (transformer.with_compute_dtype), for clients.
    metadata = build_metadata(model_config, {**(extra_metadata or {}),
                                             "compute_dtype": model.compute_dtype})
    if module_factory is not None:
        warmup_size = 0
        metadata["signatures"] = signature_descriptions
    metadata["limits"] = limits.describe(model_config, memory_budget_bytes)
    if warmup_size and warmup_size**2 > metadata["limits"]["max_pixels_per_request"]:
        raise ExportError(
            f"the warmup image ({warmup_size}x{warmup_size}) is above the pixel cap of "
            f"{metadata['limits']['max_pixels_per_request']} that the memory budget "
            f"of {memory_budget_bytes / 2**30:g} GiB allows; raise the budget or lower "
            "--warmup_size")
    metadata_json = json.dumps(metadata, indent=2, sort_keys=True)
    source_dir = os.path.join(staging, "source")
    os.makedirs(source_dir)
    metadata_path = os.path.join(source_dir, METADATA_FILENAME)
    with open(metadata_path, "w") as f:
        f.write(metadata_json + "\n")
    saved_dir = os.path.join(staging, "saved_model")
    max_pixels = metadata["limits"]["max_pixels_per_request"]
    # TF logs one "input name(s) resource with unsupported characters which will be
    # renamed" line per signature: those are the captured weights' internal handles,
    # not the signature inputs (image, style_weights, ...), whose names are valid.
    # No hand-written gradients in the export: loading those leaks the model
    # (kernels.autodiff_gradients).
    with kernels.autodiff_gradients(), \
            checkpoints.without_log_lines("which will be renamed to"), \
            checkpoints.without_log_lines("Sharding callback duration"):
        if module_factory is not None:
            module = module_factory(metadata_json, metadata_path, max_pixels)
        else:
            module = signatures.StylizerModule(
                model, model_config, metadata_json, metadata_path, max_pixels=max_pixels)
        tf.saved_model.save(module, saved_dir, signatures=module.serving_signatures())
    extra_dir = os.path.join(saved_dir, "assets.extra")
    os.makedirs(extra_dir, exist_ok=True)
    shutil.copy(metadata_path, os.path.join(extra_dir, METADATA_FILENAME))
    if warmup_size:
        warmup.write_warmup_requests(
            os.path.join(extra_dir, warmup.WARMUP_FILENAME),
            model_config.num_styles, warmup_size, model_name)
    if os.path.exists(final_dir):
        raise ExportError(f"{final_dir} appeared while exporting; not overwriting it")
    os.rename(saved_dir, final_dir)


def non_finite_weights(model):
    """Names (paths) of `model`'s variables that hold NaN or infinity; [] when none."""
    return [getattr(v, "path", None) or v.name for v in model.variables
            if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))))]


def export_checkpoint(checkpoint, export_base, version=None,
                      warmup_size=warmup.DEFAULT_WARMUP_SIZE,
                      model_name=warmup.DEFAULT_MODEL_NAME,
                      memory_budget_bytes=limits.DEFAULT_MEMORY_BUDGET_BYTES,
                      allow_different_model=False, compute_dtype="float32", bank_images=None,
                      style_image_size=arbitrary.DEFAULT_STYLE_IMAGE_SIZE):
    """Loads a checkpoint (see checkpoints.load_model) and exports it.

    A checkpoint of Magenta's arbitrary-style model exports its TF Hub-like signatures
    (arbitrary_signatures.py); with `bank_images` it exports a style bank instead: each
    image's predicted gamma/beta frozen into an N-style export (the N-style signatures,
    N = the number of images, N-style strength), the style names in the metadata.

    The config.json beside a native checkpoint (a training directory) is carried
    over whole, so its training settings are in the export's metadata.

    Args:
      checkpoint: str, a training directory, native checkpoint prefix or Magenta TF1
        checkpoint prefix.
      export_base, version, warmup_size, model_name, memory_budget_bytes,
      allow_different_model: as in
        `export_saved_model`.
      compute_dtype: "float32" or "bfloat16" (convolutions in bfloat16; weights, norms,
        inputs and outputs stay float32; see transformer.with_compute_dtype). Recorded
        in the metadata as "compute_dtype".
      bank_images: optional `--style_images` text (arbitrary-style checkpoints only).
      style_image_size: shorter side of the style images (and of the content fed as its
        own style by stylize_strength); 0: as given.

    Returns:
      (version_dir, config.ModelConfig).

    Raises:
      checkpoints.CheckpointError: the checkpoint cannot be loaded.
      ExportError: see `export_saved_model`.
    """
    if arbitrary_checkpoints.is_arbitrary_checkpoint(checkpoint):
        return _export_arbitrary(checkpoint, export_base, version, warmup_size, model_name,
                                 memory_budget_bytes, allow_different_model, compute_dtype,
                                 bank_images, style_image_size)
    if bank_images:
        raise ExportError("--style_images: --checkpoint holds an N-style model; a style bank "
                          "is made from Magenta's arbitrary-style model")
    model, model_config = checkpoints.load_model(checkpoint)
    bad = non_finite_weights(model)
    if bad:
        raise ExportError(f"--checkpoint={checkpoint} has non-finite weights (NaN or "
                          f"infinity) in {len(bad)} variable(s), e.g. {bad[0]}: every "
                          "request would get a black image; export an earlier checkpoint")
    _, directory = checkpoints.resolve_checkpoint(checkpoint)
    saved = config_lib.read_config_json(directory) if directory else None
    extra = {k: v for k, v in (saved or {}).items() if k != "model"}
    try:
        model = transformer.with_compute_dtype(model, compute_dtype)
    except ValueError as e:
        raise ExportError(str(e)) from None
    version_dir = export_saved_model(model, model_config, export_base, version=version,
                                     extra_metadata=extra, warmup_size=warmup_size,
                                     model_name=model_name,
                                     memory_budget_bytes=memory_budget_bytes,
                                     allow_different_model=allow_different_model)
    return version_dir, model_config


def _export_arbitrary(checkpoint, export_base, version, warmup_size, model_name,
                      memory_budget_bytes, allow_different_model, compute_dtype, bank_images,
                      style_image_size):
    """export_checkpoint for an arbitrary-style checkpoint: the model, or a style bank."""
    network, model_config = arbitrary_checkpoints.load_model(checkpoint)
    common = dict(version=version, model_name=model_name,
                  memory_budget_bytes=memory_budget_bytes,
                  allow_different_model=allow_different_model)
    try:
        transformer_network = transformer.with_compute_dtype(network.transformer,
                                                             compute_dtype)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if bank_images:
        try:
            paths = style_images.expand(bank_images)
            bank, bank_config = style_images.bind(network, model_config, paths,
                                                      style_image_size, strength_mode="nstyle")
        except style_images.StyleImagesError as e:
            raise ExportError(str(e)) from None
        bank = arbitrary.StyleImageModel(network, bank.bottlenecks.numpy(), style_image_size,
                                         "nstyle", transformer_network=transformer_network)
        # Served as an N-style model: clients see num_styles and style names only.
        bank_config = dataclasses.replace(bank_config, generator="magenta")
        extra = {"style_bank": {
            "source": "Magenta's arbitrary-style model: each style image's predicted gamma/beta "
                      "frozen into a table",
            "checkpoint": os.path.abspath(checkpoint),
            "style_images": [os.path.abspath(p) for p in paths],
            "style_names": list(bank_config.style_names),
            "style_image_size": style_image_size,
            "strength": "N-style: blends every norm toward the plain instance norm and mixes "
                        "the content back in (0 = the photo)"}}
        version_dir = export_saved_model(bank, bank_config, export_base, extra_metadata=extra,
                                         warmup_size=warmup_size, **common)
        return version_dir, bank_config

    def factory(metadata_json, metadata_path, max_pixels):
        return arbitrary_signatures.ArbitraryModule(
            network, metadata_json, metadata_path, max_pixels, style_image_size,
            transformer_network)

    extra = {"arbitrary": {
        "style_image_size": style_image_size,
        "bottleneck": network.bottleneck,
        "strength": "Magenta's: the style bottleneck is content*(1-w) + style*w, the content "
                    "fed as its own style after resizing its shorter side to "
                    "style_image_size (0 = that stylization, not the photo)",
        "call": "obj(content [B,H,W,3], style [B or 1,Hs,Ws,3]) -> [stylized], as TF Hub's "
                "magenta/arbitrary-image-stylization-v1-256"}}
    version_dir = export_saved_model(
        transformer_network, model_config, export_base, extra_metadata=extra, warmup_size=0,
        module_factory=factory, signature_descriptions=arbitrary_signatures.SIGNATURES,
        **common)
    return version_dir, model_config
