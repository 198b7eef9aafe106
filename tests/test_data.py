import numpy as np
import pytest
import torch

import odecheck as oc


def test_gaussian_task_shapes_and_reproducible():
    a = oc.gaussian_task(100, 16, 16, seed=3)
    b = oc.gaussian_task(100, 16, 16, seed=3)
    assert a.x.shape == (100, 16) and a.y.shape == (100, 16)
    assert torch.equal(a.x, b.x)


def test_teacher_task_is_a_smooth_function():
    t = oc.teacher_task(20, 4, width=8, depth=64, n_test=5)
    assert t.x.shape == (20, 4) and t.y_test.shape == (5, 4)
    assert torch.isfinite(t.y).all()


def test_digits_fixed_split():
    d1, d2 = oc.digits(), oc.digits()
    assert d1.x.shape[1] == 64 and d1.y.shape[1] == 10
    assert torch.equal(d1.x, d2.x)
    assert len(d1.x) + len(d1.x_test) == 1797
    with pytest.raises(oc.InvalidArgument, match="n_train"):
        oc.digits(n_train=0)


def test_c21_task_targets_are_a_100_step_tanh_ode_of_the_inputs():
    """[C21]'s task: x in R^10, 1024 / 256 points, y proportional to the explicit-Euler solution of
    dH/ds = tanh(A(s) H + b(s)) in 100 steps, recomputed here by a plain loop over the teacher's layers."""
    data = oc.c21_task(1024, seed=2, dtype=torch.float64)
    assert data.x.shape == (1024, 10) and data.y.shape == (1024, 10)
    assert data.x_test.shape == (256, 10) and data.y_test.shape == (256, 10)
    assert oc.c21_task(40, n_test=3).x_test.shape == (3, 10)
    teacher = oc.ResNet(block="single", depth=100, dim=10, activation="tanh", beta=1.0, init="smooth(0.3)",
                        ensemble=1, seed=3, dtype=torch.float64)
    w = teacher.numpy_weights()
    x = torch.cat([data.x, data.x_test]).numpy()
    h = x.copy()
    for k in range(100):
        h = h + np.tanh(h @ w["W"][0, k].T + w["b"][0, k]) / 100
    y = torch.cat([data.y, data.y_test]).numpy()
    scale = (y * h).sum() / (h * h).sum()  # the task rescales the targets to unit mean square
    assert scale > 0 and np.abs(y - scale * h).max() < 1e-10 * np.abs(y).max()
    # unit mean square per coordinate over all the task's targets (train and test): sum_i ||y_i||^2 / N = d
    assert (y ** 2).sum(1).mean() == pytest.approx(10, rel=1e-12)
    with pytest.raises(oc.InvalidArgument, match="n_test"):
        oc.c21_task(10, n_test=-1)
