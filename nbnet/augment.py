"""Data augmentation: what a run distorts its training images with, and the inputs of each
block of training samples (nbnet.pixels computes them).

An Augmentation holds the strengths, given for a 28x28 image as Simard et al. (2003) give
theirs; an image of another size gets the same distortion relative to its side (shifts and
the Gaussian's width scale with the side, the elastic alpha with its square, since the smoothed
field's size falls as 1/sigma).
"""

import math
from dataclasses import dataclass

import numpy as np

from . import pixels
from .aligned import empty

REFERENCE_SIDE = 28  # the strengths are given for images of this side
TRUNCATE = 3.0  # the Gaussian's taps reach 3 sigma (scipy.ndimage.gaussian_filter's `truncate`)


@dataclass(frozen=True)
class Augmentation:
    """Random distortions of every training image, drawn afresh each epoch: an affine map
    (rotation within +-rotate degrees, scale within 1 +- scale, shear within +-shear, shift
    within +-shift pixels) and an elastic distortion (a uniform random displacement field
    smoothed by a Gaussian of width elastic_sigma, scaled by elastic_alpha). Zero strengths
    leave an image as it is."""
    rotate: float = 10.0
    scale: float = 0.1
    shear: float = 0.1
    shift: float = 1.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0

    def __post_init__(self):
        for name, value in vars(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"augmentation {name} must be a finite number >= 0, got {value}")
        if self.scale >= 1:
            raise ValueError(f"augmentation scale must lie below 1 (a factor within 1 +- scale), got {self.scale}")
        if self.elastic_alpha > 0 and self.elastic_sigma == 0:
            raise ValueError("an elastic distortion (elastic_alpha > 0) needs elastic_sigma > 0")

    def settings(self, image_shape):
        """The kernels' settings (pixels.ROTATE ... ALPHA) for images of image_shape."""
        f = image_shape[1] / REFERENCE_SIDE
        return np.array([math.radians(self.rotate), self.scale, self.shear, self.shift * f,
                         self.elastic_alpha * f * f if self.elastic_sigma else 0.0])

    def taps(self, image_shape):
        """The normalised 1-D Gaussian G(t), t = -R..R (R = 3 sigma, rounded), of the smoothing."""
        sigma = self.elastic_sigma * image_shape[1] / REFERENCE_SIDE
        if sigma == 0:
            return np.ones(1)
        R = int(TRUNCATE * sigma + 0.5)
        g = np.exp(-0.5 * (np.arange(-R, R + 1) / sigma) ** 2)
        return g / g.sum()


def image_shape_of(n_inputs, image_shape=None):
    """The (height, width) of images of n_inputs pixels: image_shape when given (checked),
    else the square one; ValueError when there is none."""
    if image_shape is None:
        side = math.isqrt(n_inputs)
        if side * side != n_inputs:
            raise ValueError(f"augmentation distorts images, and {n_inputs} inputs are no square image: "
                             f"give the image shape")
        return side, side
    if len(image_shape) != 2 or image_shape[0] * image_shape[1] != n_inputs:
        raise ValueError(f"an image shape of {tuple(image_shape)} does not hold {n_inputs} inputs")
    return tuple(int(n) for n in image_shape)


def pixel_max(X):
    """What a value of X is divided by to make an input: 255 for uint8 pixel bytes, else 1."""
    return pixels.PIXEL_BYTES if X.dtype == np.uint8 else 1


class TrainingRows:
    """The inputs of blocks of training samples, made when each block is trained on: pixel
    bytes scaled, and with an augmentation each image distorted from (seed, epoch, its index
    in X). One buffer, as large as the largest block so far, is reused."""

    def __init__(self, X, dtype, augmentation=None, image_shape=None, seed=0):
        self.X, self.augmentation, self.seed = X, augmentation, int(seed)
        self.buffer = empty((0, X.shape[1]), dtype)
        if augmentation is not None:
            self.shape = image_shape_of(X.shape[1], image_shape)
            self.settings, self.taps = augmentation.settings(self.shape), augmentation.taps(self.shape)

    def block(self, order, epoch):
        """The inputs of samples X[order] in epoch `epoch` (a view of the buffer)."""
        if len(order) > len(self.buffer):
            self.buffer = empty((len(order), self.X.shape[1]), self.buffer.dtype)
        out = self.buffer[:len(order)]
        if self.augmentation is None:
            pixels.pixel_rows(self.X, order, 0, out)
        else:
            H, W = self.shape
            pixels.distorted_rows(self.X, order, 0, H, W, pixel_max(self.X), self.seed, int(epoch), self.settings,
                                  self.taps, out)
        return out
