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
