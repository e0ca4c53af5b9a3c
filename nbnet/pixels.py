"""Per-pixel loops over the input images, compiled: pixel bytes turned into network inputs,
and the random distortions of data augmentation (Simard, Steinkraus & Platt, ICDAR 2003),
drawn afresh for every sample of every epoch.

    a^0 = X / 255               uint8 images stay bytes in memory and are scaled when a block
                                of samples is gathered (a distortion divides by pixel_max: 255
                                for bytes, 1 for float inputs, which pass as they are)

A distortion sends each pixel (r, c) of the image it makes to a point (y, x) of the original
and reads the original there by bilinear interpolation (0 outside the image):

    affine    [x, y] = A [c - c0, r - r0] + [c0 + t_x, r0 + t_y]       (c0, r0: the centre)
              A = (1 / scale) [[cos t, -sin t], [sin t, cos t]] [[1, shear], [0, 1]]
    elastic   x += alpha (G * u_x)[r, c]      y += alpha (G * u_y)[r, c]
              u_x, u_y uniform in [-1, 1] at every pixel; G * u: u smoothed by a Gaussian of
              width sigma (zero outside the image)

Random numbers are counter-based (kernels.mix of the seed, the epoch, a stream, the sample's
index in the data set and the pixel), so a sample's distortion depends on nothing else: a run
is the same for any thread count, any slicing of an epoch and after a resume.

Read the plain loop of each step first (noise, smooth_naive, affine_map, bilinear, chained by
distort_naive); `distorted_rows` is the kernel training runs, the same steps with two speed
tricks, each explained where it is: the smoothing as two 1-D passes over whole shifted images
(`smooth`), and reads from a zero-bordered copy of the image that need no test (`padded_bilinear`).
"""

import numpy as np
from numba import prange

from .aligned import empty
from .config import PIXEL_FASTMATH, parallel, serial
from .kernels import mix

ZERO, ONE, TWO = np.float32(0), np.float32(1), np.float32(2)
TWO_TO_MINUS_24 = np.float32(2.0 ** -24)
LOW_24_BITS = np.uint64(0xFFFFFF)
# the `layer` key of kernels.mix for each kind of draw (dropout uses 0..L there)
FIELD_STREAM, AFFINE_STREAM = 1_000_001, 1_000_002
# settings[...] of a distortion (nbnet.augment.Augmentation.settings builds them)
ROTATE, SCALE, SHEAR, SHIFT, ALPHA = range(5)
PIXEL_BYTES = 255  # a uint8 pixel value v is the input v / 255
BLOCK = 16  # images per thread's turn in distorted_rows


def pixel_kernel(fn):
    """A kernel of this module: parallel, with nbnet.config.PIXEL_FASTMATH."""
    return parallel(fn, PIXEL_FASTMATH)


def pixel_loop(fn):
    """A one-thread function of this module (a plain loop, or a step distorted_rows calls per
    image), with the kernels' flags (the same bits for the same sums)."""
    return serial(fn, PIXEL_FASTMATH)


# ----------------------------------------------------------------------------- bytes to inputs
@pixel_kernel
def pixel_rows(X, order, start, x_out):
    """x_out[i] = X[order[start + i]] / 255: the pixel bytes of a block of samples as inputs.
    The quotient is a float32's, as nbnet.data's IDX loader makes it, in either float type."""
    for i in prange(x_out.shape[0]):
        for k in range(X.shape[1]):
            x_out[i, k] = np.float32(X[order[start + i], k]) / np.float32(PIXEL_BYTES)


def inputs(X, dtype):
    """The inputs of pixel bytes X, all at once: X / 255 in `dtype` (aligned)."""
    out = empty(X.shape, dtype)
    pixel_rows(X, np.arange(X.shape[0]), 0, out)
    return out


# ----------------------------------------------------------------------------- the plain loops
@pixel_loop
def noise(seed, epoch, i, H, W, R, u):
    """u[0, (R + r) * W + c] = u_x, u[1, ...] = u_y: uniform in [-1, 1) at each pixel (r, c) of
    sample i (one 64-bit draw per pixel: its top 24 bits give u_x, its low 24 bits u_y). The
    fields are flat, row after row, after R rows left for padding."""
    T = u.dtype.type
    for r in range(H):
        for c in range(W):
            bits = mix(seed, epoch, FIELD_STREAM, i, r * W + c)
            u[0, (R + r) * W + c] = T(np.float32(bits >> np.uint64(40)) * TWO_TO_MINUS_24) * T(TWO) - T(ONE)
            u[1, (R + r) * W + c] = T(np.float32(bits & LOW_24_BITS) * TWO_TO_MINUS_24) * T(TWO) - T(ONE)


@pixel_loop
def smooth_naive(u, H, W, taps, alpha, field):
    """field[d, r * W + c] = alpha sum_(r', c') G(r' - r) G(c' - c) u[d, r' * W + c']: the 2-D
    Gaussian (taps[R + t] = G(t), t = -R..R, summing to 1) over the pixels within R of (r, c),
    zero outside the image."""
    R = taps.shape[0] // 2
    T = field.dtype.type
    for d in range(2):
        for r in range(H):
            for c in range(W):
                total = T(ZERO)
                for rr in range(max(0, r - R), min(H, r + R + 1)):
                    for cc in range(max(0, c - R), min(W, c + R + 1)):
                        total += T(taps[rr - r + R]) * T(taps[cc - c + R]) * u[d, rr * W + cc]
                field[d, r * W + c] = T(alpha) * total


@serial(inline="always")
def symmetric(seed, epoch, i, t):
    """Draw t of sample i for its affine map: uniform in [-1, 1)."""
    return 2.0 * (np.float64(mix(seed, epoch, AFFINE_STREAM, i, t) >> np.uint64(40)) * 2.0 ** -24) - 1.0


@serial(inline="always")
def affine_map(seed, epoch, i, settings):
    """(a11, a12, a21, a22, t_x, t_y) of sample i: angle, scale, shear and shift drawn
    uniformly within +-settings[ROTATE] (radians), 1 +- settings[SCALE], +-settings[SHEAR] and
    +-settings[SHIFT] (pixels)."""
    angle, scale = settings[ROTATE] * symmetric(seed, epoch, i, 0), 1.0 + settings[SCALE] * symmetric(seed, epoch, i, 1)
    shear, cos, sin = settings[SHEAR] * symmetric(seed, epoch, i, 2), np.cos(angle) / scale, np.sin(angle) / scale
    return (cos, cos * shear - sin, sin, sin * shear + cos, settings[SHIFT] * symmetric(seed, epoch, i, 3),
            settings[SHIFT] * symmetric(seed, epoch, i, 4))


@serial(inline="always")
def pixel(X, row, H, W, r, c):
    """Pixel (r, c) of the image X[row] (H x W, row-major) as a float; 0 outside the image."""
    return ZERO + X[row, r * W + c] if 0 <= r < H and 0 <= c < W else ZERO + X[row, 0] * ZERO  # (one type)


@serial(inline="always")
def bilinear(X, row, H, W, y, x):
    """The image X[row] read at (y, x) between pixels: its four neighbouring pixels weighted
    by nearness (1 - fy, fy down; 1 - fx, fx across)."""
    r0, c0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - np.floor(y), x - np.floor(x)
    top = (ONE - fx) * pixel(X, row, H, W, r0, c0) + fx * pixel(X, row, H, W, r0, c0 + 1)
    bottom = (ONE - fx) * pixel(X, row, H, W, r0 + 1, c0) + fx * pixel(X, row, H, W, r0 + 1, c0 + 1)
    return (ONE - fy) * top + fy * bottom


@serial(inline="always")
def warp(X, i, H, W, pixel_max, seed, epoch, settings, field, out):
    """out[r * W + c] = X[i] read at its pixel's affine map plus field, divided by pixel_max."""
    T = out.dtype.type
    a11, a12, a21, a22, t_x, t_y = affine_map(seed, epoch, i, settings)
    c0, r0 = (W - 1) / 2, (H - 1) / 2
    for r in range(H):
        for c in range(W):
            x = T(a11 * (c - c0) + a12 * (r - r0) + c0 + t_x) + field[0, r * W + c]
            y = T(a21 * (c - c0) + a22 * (r - r0) + r0 + t_y) + field[1, r * W + c]
            out[r * W + c] = bilinear(X, i, H, W, y, x) / T(pixel_max)


@serial(inline="always")
def padded_bilinear(image, y, x):
    """bilinear without a test per pixel: `image` is the image with a border of zeros (1 row
    and column before, 2 after); a point beyond the image is moved onto that border, where its
    neighbours are zeros just as bilinear reads them, so every read is in bounds."""
    H, W = image.shape[0] - 3, image.shape[1] - 3
    y, x = min(max(y, -ONE), y * ZERO + H), min(max(x, -ONE), x * ZERO + W)
    r0, c0 = np.uint64(np.floor(y) + ONE), np.uint64(np.floor(x) + ONE)  # (unsigned: no negative-index test)
    fy, fx = y - np.floor(y), x - np.floor(x)
    top = (ONE - fx) * image[r0, c0] + fx * image[r0, c0 + np.uint64(1)]
    bottom = (ONE - fx) * image[r0 + np.uint64(1), c0] + fx * image[r0 + np.uint64(1), c0 + np.uint64(1)]
    return (ONE - fy) * top + fy * bottom


@pixel_loop
def padded_warp(X, i, H, W, pixel_max, seed, epoch, settings, field, image, out):
    """warp reading through padded_bilinear (image: the scratch padded copy of X[i])."""
    T = out.dtype.type
    for r in range(H):
        for c in range(W):
            image[r + 1, c + 1] = X[i, r * W + c]
    a11, a12, a21, a22, t_x, t_y = affine_map(seed, epoch, i, settings)
    c0, r0 = T((W - 1) / 2), T((H - 1) / 2)
    a11, a12, a21, a22 = T(a11), T(a12), T(a21), T(a22)  # (the same map in the images' float type)
    for r in range(H):
        x_row, y_row = a12 * (T(r) - r0) + c0 + T(t_x), a22 * (T(r) - r0) + r0 + T(t_y)
        for c in range(W):
            x = a11 * (T(c) - c0) + x_row + field[0, r * W + c]
            y = a21 * (T(c) - c0) + y_row + field[1, r * W + c]
            out[r * W + c] = padded_bilinear(image, y, x) / T(pixel_max)


@pixel_loop
def distort_naive(X, order, start, H, W, pixel_max, seed, epoch, settings, taps, x_out):
    """x_out[i] = X[order[start + i]] distorted (elastic field, then affine map plus field,
    then bilinear reading) and divided by pixel_max: distorted_rows with plain loops."""
    for s in range(x_out.shape[0]):
        i = order[start + s]
        u, field = np.empty((2, H * W), x_out.dtype), np.zeros((2, H * W), x_out.dtype)
        if settings[ALPHA] > 0:
            noise(seed, epoch, i, H, W, 0, u)
            smooth_naive(u, H, W, taps, settings[ALPHA], field)
        warp(X, i, H, W, pixel_max, seed, epoch, settings, field, x_out[s])


# ----------------------------------------------------------------------------- the kernel
@pixel_loop
def smooth(u, H, W, taps, alpha, rows, columns, sums, field):
    """`smooth_naive` as two 1-D Gaussians (a 2-D Gaussian is their product), each a sum of
    whole images shifted by whole rows, so that every inner loop runs over all H * W pixels
    (a long loop LLVM makes SIMD lanes of; a sum along one row of 28 pixels is not):

      down    rows[r * W + c] = sum_t G(t) u[d, (R + r + t) * W + c]   (u: R zero rows each end)
      across  columns[(R + c) * H + r] = rows[r * W + c]              (transposed; R zero rows each end)
              sums[c * H + r] = alpha sum_t G(t) columns[(c + t) * H + r]
              field[d, r * W + c] = sums[c * H + r]                    (transposed back)
    """
    n_taps, R = taps.shape[0], taps.shape[0] // 2
    T = field.dtype.type
    for d in range(2):
        rows[:] = ZERO
        for t in range(n_taps):
            g, shifted = T(taps[t]), u[d, t * W:t * W + H * W]  # (views indexed from 0: no test per index)
            for q in range(H * W):
                rows[q] += g * shifted[q]
        for r in range(H):
            for c in range(W):
                columns[(R + c) * H + r] = rows[r * W + c]
        sums[:] = ZERO
        for t in range(n_taps):
            g, shifted = T(alpha) * T(taps[t]), columns[t * H:t * H + W * H]
            for q in range(W * H):
                sums[q] += g * shifted[q]
        for r in range(H):
            for c in range(W):
                field[d, r * W + c] = sums[c * H + r]


@pixel_kernel
def distorted_rows(X, order, start, H, W, pixel_max, seed, epoch, settings, taps, x_out):
    """distort_naive with the separable smoothing (`smooth`) and reads without tests
    (`padded_warp`). One thread owns each block of BLOCK samples, and its scratch images
    (allocated once per block, not per sample). The steps are calls, not inlined: one image's
    work is enough to pay for a call, and inlining them made this kernel 1.5 s slower to
    compile and slower to run (0.41 s against 0.37 s for 60,000 images on two cores)."""
    R, dtype = taps.shape[0] // 2, x_out.dtype
    for block in prange((x_out.shape[0] + BLOCK - 1) // BLOCK):
        u, columns = np.zeros((2, (H + 2 * R) * W), dtype), np.zeros((W + 2 * R) * H, dtype)
        rows, sums, field = np.empty(H * W, dtype), np.empty(H * W, dtype), np.zeros((2, H * W), dtype)
        image = np.zeros((H + 3, W + 3), dtype)
        for s in range(block * BLOCK, min(x_out.shape[0], (block + 1) * BLOCK)):
            i = order[start + s]
            if settings[ALPHA] > 0:
                noise(seed, epoch, i, H, W, R, u)
                smooth(u, H, W, taps, settings[ALPHA], rows, columns, sums, field)
            padded_warp(X, i, H, W, pixel_max, seed, epoch, settings, field, image, x_out[s])
