r"""Training as functions: gradient flow with the factor L on block weights, minibatch SGD and Adam.

Each is a thin call of the one training loop (:func:`odecheck.training.train`) with an optimizer object
of :mod:`odecheck.optim` (:class:`~odecheck.optim.GradientFlow`, :class:`~odecheck.optim.SGD`,
:class:`~odecheck.optim.Adam`), kept for users of these signatures.

Gradient flow [M24]: dA/dt = -dl/dA, dZ_k/dt = -L dl/dZ_k, dB/dt = -dl/dB, integrated by explicit
Euler with step ``lr`` (gradient descent with learning rate lr on A, B and L*lr on Z_k). The optional
clipped flow passes every update through the bounded Lipschitz map clamp(., -clip, clip).

References
----------
[M24] Marion et al., ICLR 2024, sec. 3-4.   [C21] Cohen et al., ICML 2021 (SGD, Adam).
"""

from __future__ import annotations

import torch

from odecheck.engine._kernels import loss_and_grads as engine_loss_and_grads
from odecheck.engine.models import ResNet
from odecheck.engine.optim import SGD, Adam, GradientFlow
from odecheck.engine.training import (
    EngineOptions,
    StepCallback,
    Trajectory,
    check_data,
    check_steps,
    halving_check,
    train,
)


def loss_and_grads(net: ResNet, x, y, *, recompute: int | None = None, loss: str = "mse"
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Per-member loss and its gradients, computed by the engine (fused or batched path).

    l_r = (1/n) sum_i ||F_r(x_i) - y_i||^2 for every member r (``loss="mse"``; ``"cross_entropy"``:
    -(1/n) sum_i sum_c y_ic log softmax(F_r(x_i))_c with one-hot rows y_i), and dl_r/dtheta_r for every trained
    parameter theta (``net.trainable``) in the public layout: per-layer families (R, L, ...) like
    ``net.weights``, A (R, q, d), B (R, d', q). The tensors are new (not overwritten by later
    calls). Apply them with ``net.update_(grads, lr)``; ``net.update_(grads, lr, flow=True)`` is one
    Euler step of :func:`gradient_flow`.

    Parameters
    ----------
    net : ResNet
    x : (n, d) or (R, n, d);  y : (n, d') or (R, n, d')
    recompute : mlp block only: keep one hidden state per ``recompute`` layers (bounded memory)

    Returns
    -------
    loss : (R,) tensor;  grads : dict name -> tensor
    """
    x, y = check_data(net, x, y)
    value, grads = engine_loss_and_grads(net, x, y, segment=recompute, loss=loss)
    return value, {k: v for k, v in net.public(grads).items() if k in net.trainable}


def gradient_flow(net: ResNet, x, y, *, steps: int, lr: float, clip: float | None = None, check_halving: bool = False,
                  **options) -> Trajectory:
    """Train ``net`` in place by explicit Euler on the gradient flow of [M24]: :func:`odecheck.training.train`
    with :class:`~odecheck.optim.GradientFlow` (``lr``, ``clip``: each update direction clamped to
    [-clip, clip] entrywise).

    ``check_halving``: also run the flow with step lr/2 for 2*steps steps on a copy and report the relative
    weight gap per member in ``discretization_error`` (Euler: O(lr)). ``options``: those of ``train``:
    ``snapshots`` (steps start_step..start_step + steps whose weights are kept), ``callback(step, loss)`` after
    each step, ``start_step``, ``engine`` (:class:`EngineOptions`), ``loss`` ("mse" or "cross_entropy",
    one-hot y).

    Returns a Trajectory. A member whose loss turns NaN/inf is marked diverged and frozen; others go on.
    """
    opt = GradientFlow(lr=lr, clip=clip)
    run = halving_check if check_halving else train
    return run(net, (x, y), opt, steps=steps, **options)


def discretization_error(net: ResNet, x, y, *, steps: int, lr: float, clip: float | None = None):
    """Relative weight gap ||theta_eta(T) - theta_{eta/2}(T)|| / ||theta_{eta/2}(T)|| per member, T = steps*lr.

    ``net`` is not modified. For explicit Euler the gap is O(eta) and roughly halves with eta.
    """
    opt = GradientFlow(lr=lr, clip=clip)
    check_steps(steps)
    return halving_check(net.clone(), (x, y), opt, steps=steps).discretization_error


def sgd(net: ResNet, x, y, *, steps: int, callback: StepCallback | None = None, start_step: int = 0,
        state: dict | None = None, loss: str = "mse", **options) -> Trajectory:
    """Minibatch SGD, each member drawing its own batches; trains ``net`` in place: :func:`odecheck.training.train`
    with :class:`~odecheck.optim.SGD` (``options``: lr, batch_size, momentum, seed, weight_decay, schedule,
    total_steps, depth_factor).

    ``momentum`` (heavy ball, as torch.optim.SGD), ``weight_decay`` (added to the gradient, as
    torch.optim.SGD), ``schedule`` "constant" or "cosine" (from lr to 0 over ``total_steps``, default
    start_step + steps, so that a run split into chunks follows one schedule), ``depth_factor``: block
    weights move by L times the step, the factor of the gradient flow. ``loss`` rows 0..steps-1 are
    minibatch losses; the last row is the full-batch loss after training. ``state`` (a dict, updated in
    place) carries momentum buffers, the batch RNG and divergence between calls, so that a run split into
    chunks equals one uninterrupted run.
    """
    return train(net, (x, y), SGD(**options), steps=steps, callback=callback, start_step=start_step, state=state,
                 loss=loss)


def adam(net: ResNet, x, y, *, steps: int, callback: StepCallback | None = None, start_step: int = 0,
         state: dict | None = None, loss: str = "mse", **options) -> Trajectory:
    """Minibatch Adam (Kingma & Ba), as in the [C21] experiments; trains ``net`` in place:
    :func:`odecheck.training.train` with :class:`~odecheck.optim.Adam` (``options``: lr, batch_size, betas,
    eps, seed, weight_decay, schedule, total_steps, depth_factor; as in :func:`sgd`)."""
    return train(net, (x, y), Adam(**options), steps=steps, callback=callback, start_step=start_step, state=state,
                 loss=loss)


__all__ = ["EngineOptions", "Trajectory", "adam", "discretization_error", "gradient_flow", "loss_and_grads", "sgd"]
