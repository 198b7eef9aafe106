r"""Singular values of convolution operators, as [C21] measures its convolutional networks' kernels.

A kernel K (c_out, c_in, k, k) applied with circular padding to c_in x n x n maps is a block-circulant
operator; the 2-D discrete Fourier transform block-diagonalizes it, so its singular values are those of
the n^2 matrices K^(u, v) = sum_{a, b} K[:, :, a, b] exp(-2 pi i (a u + b v) / n), one per frequency
(Sedghi, Gupta and Long, ICLR 2019). With n < k the taps wrap around (a 3 x 3 kernel on 2 x 2 maps),
which is what the circular operator does.

References
----------
[C21] Cohen et al., ICML 2021, sec. 4.3 and its public code (circular padding assumed, stride ignored).
"""

from __future__ import annotations

import torch

from odecheck.core._errors import invalid


def conv_singular_values(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """All singular values of the circular convolution with ``kernel`` (c_out, c_in, k, k) on n x n maps:
    (n * n * min(c_out, c_in),), in float64, on the kernel's device."""
    if kernel.ndim != 4 or kernel.shape[2] != kernel.shape[3]:
        raise invalid("kernel", tuple(kernel.shape), "a (c_out, c_in, k, k) convolution kernel")
    if not (isinstance(n, int) and n >= 1):
        raise invalid("n", n, "a positive integer map side")
    k = kernel.shape[2]
    K = kernel.detach().to(torch.float64)
    if k > n:  # circular wrap: tap a lands on a mod n
        folded = K.new_zeros(*K.shape[:2], n, n)
        for a in range(k):
            for b in range(k):
                folded[:, :, a % n, b % n] += K[:, :, a, b]
        K = folded
    F = torch.fft.fft2(K, s=(n, n))  # (c_out, c_in, n, n)
    return torch.linalg.svdvals(F.permute(2, 3, 0, 1)).reshape(-1)


def conv_operator_norm(kernel: torch.Tensor, n: int) -> float:
    """The largest singular value of the circular convolution with ``kernel`` on n x n maps."""
    return float(conv_singular_values(kernel, n).max())
