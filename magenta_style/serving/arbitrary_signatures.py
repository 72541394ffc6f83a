"""The export of Magenta's arbitrary-style model: called like TF Hub's
`magenta/arbitrary-image-stylization-v1-256`.

    hub.load(path)(content, style)   -> [stylized]   (a one-element list, as TF Hub's)

content float32 [B, H, W, 3] and style float32 [B or 1, Hs, Ws, 3], both in [0, 1], any
size (Hs, Ws >= 43). No signature resizes the style image: the caller does (256 px is
what the model was trained on), as with TF Hub. Signatures:

    serving_default   image [B,H,W,3], style_image [B|1,Hs,Ws,3] -> stylized_image
    stylize_strength  image, style_image, strength [B] in [0,1] -> stylized_image
                      (Magenta's strength: the bottleneck content*(1-w) + style*w, the
                      content fed as its own style after resizing its shorter side to the
                      export's style_image_size)
    serving_bytes     image_bytes string [B], style_image_bytes string [B|1] (PNG/JPEG/...)
                      -> stylized_image_bytes string [B] (PNG)
    predict_style     style_image -> style_bottleneck float32 [B, 100]
    transfer          image, style_bottleneck [B|1, 100] -> stylized_image

Inputs are checked in the graph as in the N-style export (signatures.py): ranks, 3
channels, batch sizes, finite values, strength in [0, 1], and the pixel cap of the
export's memory budget on the content (and on the style image: each call holds its
activations at once), refused as InvalidArgument naming the input.
"""
import tensorflow as tf

from magenta_style.networks import arbitrary
from magenta_style.networks import inception_v3
from magenta_style.serving import signatures

SIGNATURES = {
    "serving_default": ("image float32 [B,H,W,3] in [0,1], style_image float32 [B or 1,Hs,Ws,3] "
                        "in [0,1] (Hs, Ws >= 43; resize it yourself, 256 px is the training "
                        "size) -> stylized_image float32 [B,H,W,3]"),
    "stylize_strength": ("image, style_image, strength float32 [B] in [0,1] (Magenta's: "
                         "bottleneck content*(1-w) + style*w) -> stylized_image"),
    "serving_bytes": ("image_bytes string [B], style_image_bytes string [B or 1] "
                      "(PNG/JPEG/GIF/BMP/WebP) -> stylized_image_bytes string [B] (PNG)"),
    "predict_style": "style_image float32 [B,Hs,Ws,3] -> style_bottleneck float32 [B,100]",
    "transfer": ("image float32 [B,H,W,3], style_bottleneck float32 [B or 1,100] -> "
                 "stylized_image"),
}


def _checked_style_image(style_image, batch, max_pixels, name="style_image"):
    """Rank 4, 3 channels, batch 1 or `batch`, >= 43 px a side, under the pixel cap."""
    style_image = signatures._checked_rank(style_image, 4, name, "[B, H, W, 3]")  # pylint: disable=protected-access
    shape = tf.shape(style_image)
    check = signatures._check  # pylint: disable=protected-access
    side = inception_v3.MIN_INPUT_SIZE
    with tf.control_dependencies([
            check(tf.equal(shape[3], 3), f"{name} must have 3 channels (RGB), [B, H, W, 3]"),
            check(tf.logical_or(tf.equal(shape[0], 1), tf.equal(shape[0], batch)),
                  f"{name} must hold one image or one per content image"),
            check(tf.logical_and(shape[1] >= side, shape[2] >= side),
                  f"{name} must be at least {side}x{side} pixels (the style predictor's "
                  "smallest input; 256 px is the training size)")]):
        style_image = tf.identity(style_image)
    style_image = signatures._checked_pixel_count(style_image, max_pixels)  # pylint: disable=protected-access
    return tf.ensure_shape(style_image, [None, None, None, 3])


def _per_example(tensor, batch):
    """[1 or B, ...] -> [B, ...]."""
    return tf.broadcast_to(tensor, tf.concat([[batch], tf.shape(tensor)[1:]], 0))


class ArbitraryModule(tf.__internal__.tracking.AutoTrackable):
    """What gets saved for an arbitrary-style model (see the module docstring).

    Args:
      network: a built arbitrary.ArbitraryStyleNetwork (float32 weights; its transformer
        may compute in bfloat16, see transformer.with_compute_dtype).
      metadata_json: str returned by `metadata()`.
      metadata_path: optional file holding it (saved as an asset).
      max_pixels: the most pixels one request's content (and style) may hold; 0: no cap.
      style_image_size: the shorter side the content is resized to when it is fed as its
        own style (stylize_strength).
      transformer_network: optional transformer to use (a bfloat16 copy).
    """

    def __init__(self, network, metadata_json, metadata_path=None, max_pixels=None,
                 style_image_size=arbitrary.DEFAULT_STYLE_IMAGE_SIZE,
                 transformer_network=None):
        super().__init__()
        bound = arbitrary.StyleImageModel(network, [[0.0] * network.bottleneck],
                                          style_image_size, "magenta",
                                          transformer_network=transformer_network)
        net = bound.transformer
        self.variables = [v.value for v in network.predictor.variables] + [
            v.value for v in net.variables]
        self.trainable_variables = []  # Magenta's Hub model is not fine-tunable either.
        self.regularization_losses = []
        if metadata_path is not None:
            self.metadata_file = tf.saved_model.Asset(metadata_path)
        check_image = signatures._checked_image  # pylint: disable=protected-access
        cap = signatures._checked_pixel_count  # pylint: disable=protected-access
        width = network.bottleneck

        def predict(style_image):
            return network.predict_style(style_image)

        def transfer(image, bottlenecks):
            ones = tf.ones_like(bottlenecks[:, :1])
            return tf.cast(net(image, (ones, bottlenecks[:, None, :])), tf.float32)

        image_in = signatures.IMAGE_BATCH
        bottleneck_in = tf.TensorSpec([None, width], tf.float32)

        # The two halves, traced once each; every signature calls these.
        predict_fn = signatures.graph_function(input_signature=[image_in])(
            predict).get_concrete_function()
        transfer_fn = signatures.graph_function(input_signature=[image_in, bottleneck_in])(
            transfer).get_concrete_function()

        def checked_pair(image, style_image):
            image = cap(check_image(image), max_pixels)
            batch = signatures._batch_size(image)  # pylint: disable=protected-access
            return image, _checked_style_image(style_image, batch, max_pixels), batch

        def stylized(image, style_image):
            image, style_image, batch = checked_pair(image, style_image)
            return transfer_fn(image, _per_example(predict_fn(style_image), batch))

        def checked_bottleneck(bottleneck, batch):
            bottleneck = signatures._checked_rank(bottleneck, 2, "style_bottleneck",  # pylint: disable=protected-access
                                                  f"[B or 1, {width}]")
            shape = tf.shape(bottleneck)
            check = signatures._check  # pylint: disable=protected-access
            with tf.control_dependencies([
                    check(tf.equal(shape[1], width), f"style_bottleneck must have {width} "
                          "entries in its last axis (predict_style's output)"),
                    check(tf.logical_or(tf.equal(shape[0], 1), tf.equal(shape[0], batch)),
                          "style_bottleneck must hold one row or one per image"),
                    check(tf.reduce_all(tf.math.is_finite(bottleneck)),
                          "style_bottleneck must be finite")]):
                bottleneck = tf.identity(bottleneck)
            return _per_example(tf.ensure_shape(bottleneck, [None, width]), batch)

        graph_function = signatures.graph_function

        @graph_function(input_signature=[signatures.IMAGE, signatures.STYLE_IMAGE])
        def serving_default(image, style_image):
            return {"stylized_image": stylized(image, style_image)}

        @graph_function(input_signature=[signatures.IMAGE, signatures.STYLE_IMAGE,
                                         signatures.STRENGTH])
        def stylize_strength(image, style_image, strength):
            image, style_image, batch = checked_pair(image, style_image)
            strength = signatures._checked_strength(strength, batch)  # pylint: disable=protected-access
            style = _per_example(predict_fn(style_image), batch)
            content = predict_fn(arbitrary.prepare_style_image(image, style_image_size))
            return {"stylized_image": transfer_fn(
                image, arbitrary.mix_with_content(style, content, strength))}

        @graph_function(input_signature=[signatures.IMAGE_BYTES, signatures.STYLE_IMAGE_BYTES])
        def serving_bytes(image_bytes, style_image_bytes):
            image_bytes = signatures._checked_encoded_pixel_count(image_bytes, max_pixels)  # pylint: disable=protected-access
            style_image_bytes = signatures._checked_encoded_pixel_count(  # pylint: disable=protected-access
                style_image_bytes, max_pixels)
            out = stylized(signatures.decode_images(image_bytes),
                           signatures.decode_images(style_image_bytes))
            return {"stylized_image_bytes": signatures.encode_png(out)}

        @graph_function(input_signature=[signatures.STYLE_IMAGE])
        def predict_style(style_image):
            style_image = _checked_style_image(
                style_image, tf.shape(style_image)[0], max_pixels)
            return {"style_bottleneck": predict_fn(style_image)}

        @graph_function(input_signature=[signatures.IMAGE, signatures.STYLE_BOTTLENECK])
        def transfer_signature(image, style_bottleneck):
            image = cap(check_image(image), max_pixels)
            batch = signatures._batch_size(image)  # pylint: disable=protected-access
            return {"stylized_image": transfer_fn(image,
                                                  checked_bottleneck(style_bottleneck, batch))}

        @graph_function
        def call(content, style):
            # TF Hub's model returns a list holding the stylized batch: `outputs[0]`.
            return [stylized(content, style)]

        call.get_concrete_function(signatures.IMAGE, signatures.STYLE_IMAGE)

        @graph_function(input_signature=[])
        def metadata():
            return tf.constant(metadata_json)

        self.serving_default = serving_default
        self.stylize_strength = stylize_strength
        self.serving_bytes = serving_bytes
        self.predict_style = predict_style
        self.transfer = transfer_signature
        self.__call__ = call
        self.metadata = metadata

    def serving_signatures(self):
        """Signature name -> tf.function, for tf.saved_model.save."""
        return {"serving_default": self.serving_default,
                "stylize_strength": self.stylize_strength,
                "serving_bytes": self.serving_bytes,
                "predict_style": self.predict_style,
                "transfer": self.transfer}

