"""Singular values of circular convolutions ([C21]'s kernel statistic) against the dense operator."""

import numpy as np
import pytest
import torch
from odecheck._errors import InvalidArgument
from odecheck.estimators.spectral import conv_operator_norm, conv_singular_values


def _circular_matrix(K: np.ndarray, n: int) -> np.ndarray:
    """The dense matrix of the circular convolution y[o, i, j] = sum K[o, c, a, b] x[c, (i + a) mod n, (j + b) mod n]."""
    c_out, c_in, k, _ = K.shape
    M = np.zeros((c_out * n * n, c_in * n * n))
    for o in range(c_out):
        for i in range(n):
            for j in range(n):
                for c in range(c_in):
                    for a in range(k):
                        for b in range(k):
                            M[(o * n + i) * n + j, (c * n + (i + a) % n) * n + (j + b) % n] += K[o, c, a, b]
    return M


@pytest.mark.parametrize("c_out,c_in,n", [(3, 3, 5), (4, 2, 4), (2, 5, 3), (3, 3, 2), (2, 3, 1)])
def test_fft_singular_values_against_the_dense_circular_operator(c_out, c_in, n):
    K = torch.randn(c_out, c_in, 3, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    dense = np.linalg.svd(_circular_matrix(K.numpy(), n), compute_uv=False)
    ours = np.sort(conv_singular_values(K, n).numpy())[::-1]
    np.testing.assert_allclose(ours, dense[:len(ours)], rtol=1e-10, atol=1e-10)
    assert conv_operator_norm(K, n) == pytest.approx(dense[0], rel=1e-12)


def test_spectral_refuses_bad_input_by_name():
    with pytest.raises(InvalidArgument, match="kernel"):
        conv_singular_values(torch.zeros(3, 3, 3), 4)
    with pytest.raises(InvalidArgument, match="n"):
        conv_singular_values(torch.zeros(2, 2, 3, 3), 0)


def test_spectral_computes_in_float64_and_names_each_bad_argument_exactly():
    K = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dense = np.linalg.svd(_circular_matrix(K.numpy(), 4), compute_uv=False)
    ours = np.sort(conv_singular_values(K.float(), 4).numpy())[::-1]  # a float32 kernel, computed in float64
    assert conv_singular_values(K.float(), 4).dtype == torch.float64
    np.testing.assert_allclose(ours, np.linalg.svd(_circular_matrix(K.float().double().numpy(), 4), compute_uv=False)[:len(ours)],
                               rtol=1e-12, atol=1e-12)
    assert ours[0] == pytest.approx(dense[0], rel=1e-6)
    with pytest.raises(InvalidArgument) as e:
        conv_singular_values(torch.zeros(2, 2, 3, 4), 4)  # not square
    assert str(e.value) == "kernel=(2, 2, 3, 4): expected a (c_out, c_in, k, k) convolution kernel"
    with pytest.raises(InvalidArgument) as e:
        conv_singular_values(torch.zeros(2, 2, 3, 3), 0)
    assert str(e.value) == "n=0: expected a positive integer map side"
