"""Pixel bytes and image distortions (nbnet.pixels): the kernel against its plain loops and
its NumPy/SciPy twin, the properties a distortion must have, and reproducibility."""

import numba
import numpy as np
import pytest

from nbnet import pixels
from nbnet import reference as R
from nbnet.augment import Augmentation, TrainingRows, image_shape_of

SIMARD = Augmentation()


def digit_like(n, side, seed=0):
    """n uint8 images of side x side: a bright blob off centre on black, like a digit."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:side, 0:side]
    images = np.zeros((n, side * side), np.uint8)
    for s in range(n):
        cy, cx = rng.uniform(side * 0.3, side * 0.7, 2)
        blob = np.exp(-((r - cy) ** 2 + (c - cx) ** 2) / (2 * (side / 7) ** 2))
        images[s] = np.round(255 * blob * rng.uniform(0.5, 1.0)).astype(np.uint8).reshape(-1)
    return images


def distorted(X, augmentation, shape, dtype=np.float32, seed=3, epoch=2, order=None, naive=False):
    order = np.arange(len(X), dtype=np.int64) if order is None else order
    settings, taps = augmentation.settings(shape), augmentation.taps(shape)
    out = np.empty((len(order), X.shape[1]), dtype)
    kernel = pixels.distort_naive if naive else pixels.distorted_rows
    kernel(X, order, 0, *shape, 255 if X.dtype == np.uint8 else 1, seed, epoch, settings, taps, out)
    return out


def test_bytes_become_the_same_inputs_as_the_float_loader():
    X = np.arange(256, dtype=np.uint8).reshape(4, 64)
    for dtype in (np.float32, np.float64):  # (the loader divides in float32 for float64 too)
        np.testing.assert_array_equal(pixels.inputs(X, dtype), np.divide(X, np.float32(255)).astype(dtype))


def test_zero_strength_is_the_identity_bit_for_bit():
    X = digit_like(5, 28)
    nothing = Augmentation(0, 0, 0, 0, 0, 0)
    np.testing.assert_array_equal(distorted(X, nothing, (28, 28)), pixels.inputs(X, np.float32))
    np.testing.assert_array_equal(distorted(X, nothing, (28, 28), naive=True), pixels.inputs(X, np.float32))


def test_a_whole_pixel_displacement_moves_the_image_exactly():
    X = digit_like(1, 8).astype(np.float32) / 255
    field = np.zeros((2, 64), np.float32)
    field[0], field[1] = 2.0, -1.0  # read each pixel from 2 columns right and 1 row up
    out = np.empty(64, np.float32)
    pixels.warp(X, 0, 8, 8, 1, 0, 1, np.zeros(5), field, out)
    image, moved = X[0].reshape(8, 8), out.reshape(8, 8)
    np.testing.assert_array_equal(moved[1:, :6], image[:7, 2:])
    assert not moved[0].any() and not moved[:, 6:].any()  # what came from outside the image is 0


def test_distortions_keep_the_ink_roughly():
    X = digit_like(200, 28)
    before, after = pixels.inputs(X, np.float32).sum(), distorted(X, SIMARD, (28, 28)).sum()
    assert abs(after / before - 1) < 0.05
    changed = np.abs(distorted(X, SIMARD, (28, 28)) - pixels.inputs(X, np.float32)).mean(axis=1)
    assert np.all(changed > 0.005)  # every image moved


@pytest.mark.parametrize("inputs", [np.uint8, np.float64])  # pixel bytes into float32; float64 inputs, as the estimator's
def test_the_kernel_matches_its_plain_loops_and_its_numpy_twin(inputs):
    """Every image shape in one test (the kernel is compiled once per input type, by one worker);
    the plain loops on pixel bytes (in float64 the NumPy twin agrees to 1e-12)."""
    for shape in [(28, 28), (8, 8), (5, 9)]:
        kernel_plain_loops_and_twin_agree(inputs, shape)


def kernel_plain_loops_and_twin_agree(inputs, shape):
    X = digit_like(6, shape[0])[:, :shape[0] * shape[1]] if shape[0] == shape[1] else \
        np.random.default_rng(1).integers(0, 256, (6, shape[0] * shape[1]), dtype=np.uint8)
    dtype, pixel_max = (np.float32, 255) if inputs == np.uint8 else (np.float64, 1)
    X = X if inputs == np.uint8 else X / 255.0
    for augmentation in (SIMARD, Augmentation(rotate=30, scale=0.3, shear=0.5, shift=4, elastic_alpha=0),
                         Augmentation(0, 0, 0, 0, elastic_alpha=60, elastic_sigma=3)):
        fast = distorted(X, augmentation, shape, dtype)
        if inputs == np.uint8:  # (the plain loops in one type: they are the reader's, not training's)
            np.testing.assert_allclose(fast, distorted(X, augmentation, shape, dtype, naive=True), atol=2e-5,
                                       err_msg=f"plain loops, {shape}")
        twin = R.distort(X, np.arange(len(X)), *shape, pixel_max, 3, 2, augmentation.settings(shape),
                         augmentation.taps(shape), dtype)
        np.testing.assert_allclose(fast, twin, atol=1e-4 if dtype == np.float32 else 1e-12, err_msg=f"twin, {shape}")


def test_a_sample_is_distorted_by_its_seed_epoch_and_index_only():
    X = digit_like(40, 28)
    order = np.random.default_rng(0).permutation(40).astype(np.int64)
    whole = distorted(X, SIMARD, (28, 28))
    np.testing.assert_array_equal(distorted(X, SIMARD, (28, 28), order=order), whole[order])
    assert not np.array_equal(distorted(X, SIMARD, (28, 28), epoch=3), whole)
    assert not np.array_equal(distorted(X, SIMARD, (28, 28), seed=4), whole)


def test_the_same_bits_on_one_thread_or_two():
    X = digit_like(64, 28)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = distorted(X, SIMARD, (28, 28))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        np.testing.assert_array_equal(distorted(X, SIMARD, (28, 28)), one)
    finally:
        numba.set_num_threads(threads)


def test_training_rows_scale_bytes_or_distort_blocks():
    X = digit_like(10, 8)
    rows = TrainingRows(X, np.float32)
    order = np.array([7, 2, 5], dtype=np.int64)
    np.testing.assert_array_equal(rows.block(order, 1), pixels.inputs(X, np.float32)[order])
    rows = TrainingRows(X, np.float32, SIMARD, (8, 8), seed=3)
    np.testing.assert_array_equal(rows.block(order, 2), distorted(X, SIMARD, (8, 8))[order])


def test_strengths_and_shapes_are_checked():
    with pytest.raises(ValueError, match="scale must lie below 1"):
        Augmentation(scale=1.0)
    with pytest.raises(ValueError, match="rotate must be a finite number"):
        Augmentation(rotate=float("nan"))
    with pytest.raises(ValueError, match="no square image"):
        image_shape_of(10)
    with pytest.raises(ValueError, match="does not hold 10 inputs"):
        image_shape_of(10, (3, 3))
    assert image_shape_of(64) == (8, 8) and image_shape_of(10, (2, 5)) == (2, 5)
