"""Data sets: the [M24] synthetic Gaussian task, a teacher neural-ODE task, scikit-learn's digits.

References
----------
[M24] Marion et al., ICLR 2024, sec. 5 (synthetic data: x, y independent N(0, I)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.core._errors import invalid
from odecheck.core.validation import check_int
from odecheck.engine.init import member_generator


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A regression task. x_* (n, d), y_* (n, d'); the test part may be empty (n = 0)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.y.shape[1])

    def to(self, *, dtype=None, device=None) -> Dataset:
        f = lambda t: t.to(dtype=dtype or t.dtype, device=device or t.device)
        return Dataset(name=self.name, x=f(self.x), y=f(self.y), x_test=f(self.x_test), y_test=f(self.y_test))


def gaussian_task(n: int = 100, input_dim: int = 16, output_dim: int = 16, *, n_test: int = 0,
                  seed: int = 0, dtype=torch.float32) -> Dataset:
    """x and y independent standard Gaussians, as in the [M24] synthetic experiments."""
    n = check_int("n", n, 1)
    check_int("input_dim", input_dim, 1)
    check_int("output_dim", output_dim, 1)
    check_int("n_test", n_test, 0)
    g = member_generator(seed, 10_000)
    x = torch.randn(n + n_test, input_dim, generator=g, dtype=torch.float64)
    y = torch.randn(n + n_test, output_dim, generator=g, dtype=torch.float64)
    return Dataset(name="gaussian", x=x[:n].to(dtype), y=y[:n].to(dtype),
                   x_test=x[n:].to(dtype), y_test=y[n:].to(dtype))


def teacher_task(n: int = 100, dim: int = 16, *, width: int = 32, activation: str = "tanh",
                 length_scale: float = 0.3, depth: int = 256, n_test: int = 0, seed: int = 0,
                 block: str = "mlp", dtype=torch.float32) -> Dataset:
    """Targets from a teacher network with smooth (Gaussian-process) weights at beta = 1.

    The teacher is a deep ResNet (``block`` "mlp", or "single" as in [C21]) whose weights are
    Z_k = Z(k/depth) with Z a Gaussian process of the given length scale: a discretization of a
    Lipschitz neural ODE, so that the task has an exact continuous-depth solution. Targets are
    scaled to unit mean-square per coordinate.
    """
    from odecheck.engine.models import ResNet

    n = check_int("n", n, 1)
    check_int("n_test", n_test, 0)
    teacher = ResNet(block=block, depth=depth, dim=dim, width=width, activation=activation, beta=1.0,
                     init=f"smooth({length_scale})", ensemble=1, seed=seed + 1, dtype=torch.float64)
    g = member_generator(seed, 10_001)
    x = torch.randn(n + n_test, dim, generator=g, dtype=torch.float64)
    y = teacher(x)[0]
    y = y / y.pow(2).sum(1).mean().sqrt() * np.sqrt(dim)
    return Dataset(name="teacher", x=x[:n].to(dtype), y=y[:n].to(dtype), x_test=x[n:].to(dtype),
                   y_test=y[n:].to(dtype))


C21_DIM, C21_STEPS = 10, 100


def c21_task(n: int = 1024, *, n_test: int | None = None, seed: int = 0, dtype=torch.float32) -> Dataset:
    """odecheck's stand-in for [C21]'s synthetic task, written before [C21]'s code could be read (its own
    task is :func:`c21_code_task`): x ~ N(0, I_10), targets from a 100-step tanh ODE.

    The ODE is dH/ds = tanh(A(s) H + b(s)) with A, b smooth (Gaussian-process) in s, discretized in
    100 explicit-Euler steps (a single-block teacher at beta = 1). [C21] uses 1024 training and 256
    test points: ``n_test`` defaults to n // 4.
    """
    n = check_int("n", n, 1)
    n_test = n // 4 if n_test is None else n_test
    data = teacher_task(n, C21_DIM, activation="tanh", depth=C21_STEPS, n_test=n_test, seed=seed, block="single",
                        dtype=dtype)
    return Dataset(name="c21", x=data.x, y=data.y, x_test=data.x_test, y_test=data.y_test)


def c21_code_task(n: int = 1024, *, n_test: int | None = None, dim: int = C21_DIM, seed: int = 0,
                  dtype=torch.float32) -> Dataset:
    r"""[C21]'s synthetic task as its public code builds it (../shared/SOURCES.md).

    x ~ U(-1, 1)^dim; the target is 100 explicit steps of
    z <- z + 100^{-1/2} tanh(sin(5 pi t / 100) z + cos(5 pi t / 100)), t = 0..99, from z = x (no noise);
    then x and y are each scaled to unit norm per row (so y depends on ||x||, which the network does not
    see). The first n rows train, the next ``n_test`` (default n // 4: 1024 and 256 as in [C21]) test.
    """
    n = check_int("n", n, 1)
    n_test = n // 4 if n_test is None else check_int("n_test", n_test, 0)
    check_int("dim", dim, 1)
    g = member_generator(seed, 10_002)
    x = 2.0 * torch.rand(n + n_test, dim, generator=g, dtype=torch.float64) - 1.0
    z = x.clone()
    for t in range(C21_STEPS):
        a = 5.0 * np.pi * t / C21_STEPS
        z = z + C21_STEPS ** -0.5 * torch.tanh(np.sin(a) * z + np.cos(a))
    x = x / x.norm(dim=1, keepdim=True)
    y = z / z.norm(dim=1, keepdim=True)
    return Dataset(name="c21-code", x=x[:n].to(dtype), y=y[:n].to(dtype), x_test=x[n:].to(dtype),
                   y_test=y[n:].to(dtype))


def digits_conv25(*, n_train: int | None = None, seed: int = 0, dtype=torch.float32) -> Dataset:
    """The MNIST features of [C21]'s code, with scikit-learn's digits standing in for MNIST (offline).

    [C21] passes raw 28 x 28 MNIST through two untrained random convolutions (5 x 5 stride 2, then
    3 x 3 stride 2, one channel) to 25 features of unit norm, with one-hot targets in 25 dimensions.
    Here the 8 x 8 digits are first resized to 28 x 28 (bilinear), then the same two convolutions
    (weights N(0, 1/fan_in) from ``seed``, no bias) give 25 features, scaled to unit norm; targets are
    the 10 one-hot classes padded with zeros to 25. Same split as :func:`digits`.
    """
    base = digits(n_train=n_train, dtype=torch.float64)
    g = member_generator(seed, 10_003)
    w1 = torch.randn(1, 1, 5, 5, generator=g, dtype=torch.float64) / 5.0
    w2 = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64) / 3.0

    def features(x):
        img = torch.nn.functional.interpolate(x.reshape(-1, 1, 8, 8), size=(28, 28), mode="bilinear",
                                              align_corners=False)
        f = torch.nn.functional.conv2d(torch.nn.functional.conv2d(img, w1, stride=2), w2, stride=2).reshape(-1, 25)
        return (f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(dtype)

    def targets(y):
        return torch.nn.functional.pad(y, (0, 15)).to(dtype)

    return Dataset(name="digits-conv25", x=features(base.x), y=targets(base.y), x_test=features(base.x_test),
                   y_test=targets(base.y_test))


def digits(*, n_train: int | None = None, dtype=torch.float32) -> Dataset:
    """scikit-learn's bundled 8x8 digits (offline): x in [0, 1]^64, y one-hot in R^10.

    Fixed stratified split: 25 % test, ``random_state=0``. ``n_train`` keeps the first n rows.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, t = load_digits(return_X_y=True)
    X = X / 16.0
    Y = np.eye(10)[t]
    xtr, xte, ytr, yte = train_test_split(X, Y, test_size=0.25, random_state=0, stratify=t)
    if n_train is not None:
        if not (isinstance(n_train, int) and 1 <= n_train <= len(xtr)):
            raise invalid("n_train", n_train, f"an integer in [1, {len(xtr)}]")
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    f = lambda a: torch.as_tensor(a, dtype=dtype)
    return Dataset(name="digits", x=f(xtr), y=f(ytr), x_test=f(xte), y_test=f(yte))
