r"""Does a ResNet discretize an ODE? Reconstruction of the activations backward, and what it costs the
gradient ([S22], claim 12 ``ode-discretization``).

A network's weights Z_0, ..., Z_{D-1} are read as nodes of a weight path, and g_k(h) = f(h, Z_k) /
alpha_D its residual branch without the residual scale. Two schemes run over them with step c:

* **Euler** (the ResNet itself, D steps, c = alpha_D): h_{k+1} = h_k + c g_k(h_k); reversed by
  h_k ~ h_{k+1} - c g_k(h_{k+1}) (the memory-free adjoint's reverse step).
* **Heun** (D - 1 steps, c = alpha_{D-1}, nodes k and k+1 per step):
  h_{k+1} = h_k + (c/2) [g_k(h_k) + g_{k+1}(h_k + c g_k(h_k))]; reversed by
  h_k ~ h_{k+1} - (c/2) [g_{k+1}(h_{k+1}) + g_k(h_{k+1} - c g_{k+1}(h_{k+1}))].

Expanding one step (J_k the Jacobian of g_k): the Euler reversal misses c^2 J_k g_k + O(c^3) per step,
so the reconstruction error of h_0 is O(1/D) whenever the branches are Lipschitz, whatever the
weights' regularity; the Heun reversal misses (c^2/4) (J_{k+1} - J_k)(g_k - g_{k+1}) + O(c^3), which is
O(c^3) when consecutive nodes differ by O(1/D) (weights smooth in depth: error O(1/D^2)) and O(c^2)
otherwise (iid weights: O(1/D)). The gradients computed with the reconstructed activations inherit
the same orders.

References
----------
[S22] Sander, Ablin, Peyre, *Do Residual Neural Networks discretize Neural Ordinary Differential
Equations?*, NeurIPS 2022, sec. 5 (adjoint method, Heun's method).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from odecheck.core._errors import invalid

Scheme = Literal["euler", "heun"]
SCHEMES: tuple[str, ...] = ("euler", "heun")
Branch = Callable[[int, torch.Tensor], torch.Tensor]


def _as_resnet(net):
    """An odecheck.ResNet, or a copy of an ``odecheck.nn.StackedResNet``'s current weights as one."""
    return net.to_resnet() if hasattr(net, "to_resnet") else net


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise invalid("scheme", scheme, "'euler' or 'heun'")


def node_weights(net) -> list[dict[str, torch.Tensor]]:
    """The network's layer weights node by node, float64, engine layout: one dict per layer."""
    from odecheck.core import layout
    from odecheck.engine.models import LAYER_FAMILIES

    fams = tuple(dict.fromkeys(LAYER_FAMILIES[net.block] + net.layer_families))
    p64 = {k: layout.to_internal(k, v.to(torch.float64), net.layered) for k, v in net.weights.items()}
    return [{f: p64[f][k] for f in fams} for k in range(net.depth)]


def branch(net, nodes: list[dict[str, torch.Tensor]] | None = None) -> Branch:
    """g(k, H): the residual branch at node k without the residual scale, for states H (R, n, q) in
    float64 (the block's neural-ODE vector field divided by its factor D alpha_D)."""
    from odecheck.engine import blocks
    from odecheck.engine.blocks.base import residual_scale

    if not blocks.get(net.block).acts_on_vectors:
        raise invalid("block", net.block, "a block acting on vectors (mlp, res1, single, meanfield)")
    if net.delta_mode != "fixed":
        raise invalid("delta", net.delta_mode, "'fixed' (a trained residual scale is not a weight path)")
    blk = blocks.get(net.block)
    nodes = node_weights(net) if nodes is None else nodes
    p64 = nodes[0]
    factor = net.depth * residual_scale(net.depth, net.beta)

    def g(k: int, H: torch.Tensor) -> torch.Tensor:
        return blk.vector_field(net, nodes[k], p64, H) / factor

    return g


def steps_and_scale(depth: int, beta: float, scheme: str) -> tuple[int, float]:
    """(steps, c) of a scheme over ``depth`` nodes: Euler D steps of alpha_D, Heun D - 1 of alpha_{D-1}."""
    _check_scheme(scheme)
    n = depth if scheme == "euler" else depth - 1
    if n < 1:
        raise invalid("depth", depth, "at least 2 layers for Heun's scheme")
    return n, float(n) ** (-beta)


def step(g: Branch, k: int, h: torch.Tensor, c: float, scheme: str) -> torch.Tensor:
    """One forward step from h_k to h_{k+1}."""
    a = g(k, h)
    if scheme == "euler":
        return h + c * a
    return h + 0.5 * c * (a + g(k + 1, h + c * a))


def reverse_step(g: Branch, k: int, h: torch.Tensor, c: float, scheme: str) -> torch.Tensor:
    """One reverse step from h_{k+1} back to (an approximation of) h_k."""
    if scheme == "euler":
        return h - c * g(k, h)
    b = g(k + 1, h)
    return h - 0.5 * c * (b + g(k, h - c * b))


def trajectory(g: Branch, h0: torch.Tensor, steps: int, c: float, scheme: str) -> list[torch.Tensor]:
    """h_0, ..., h_steps of the scheme."""
    hs = [h0]
    for k in range(steps):
        hs.append(step(g, k, hs[-1], c, scheme))
    return hs


def reconstruction(g: Branch, hN: torch.Tensor, steps: int, c: float, scheme: str) -> list[torch.Tensor]:
    """The reversed pass from h_N: reconstructed h_0, ..., h_N."""
    hs = [hN]
    for k in range(steps - 1, -1, -1):
        hs.append(reverse_step(g, k, hs[-1], c, scheme))
    return hs[::-1]


def _states(net, x) -> torch.Tensor:
    xin = net.prepare_input(x).to(torch.float64)
    A = net.weights["A"].to(torch.float64)
    return torch.matmul(xin, A.transpose(-1, -2))


def reconstruction_error(net, x, scheme: Scheme = "euler") -> torch.Tensor:
    r"""Relative error of h_0 recovered backward from h_N: max over inputs of
    ||h~_0 - h_0|| / ||h_0||, per member (R,), in float64. ``scheme``: 'euler' (the network as it runs)
    or 'heun' (the same nodes run by Heun's scheme). ``net``: an odecheck.ResNet or odecheck.nn.StackedResNet."""
    _check_scheme(scheme)
    net = _as_resnet(net)
    with torch.no_grad():
        g = branch(net)
        steps, c = steps_and_scale(net.depth, net.beta, scheme)
        h0 = _states(net, x)
        hN = trajectory(g, h0, steps, c, scheme)[-1]
        rec = reconstruction(g, hN, steps, c, scheme)[0]
        return ((rec - h0).norm(dim=-1) / h0.norm(dim=-1).clamp_min(1e-300)).amax(dim=-1)


def _layer_backward(g: Branch, k: int, h: torch.Tensor, adj: torch.Tensor, c: float, scheme: str,
                    leaves: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, list]:
    """dl/dh_k and the weight gradients of step k from dl/dh_{k+1}, at the state ``h`` given for h_k."""
    hk = h.detach().requires_grad_(True)
    used = [k] if scheme == "euler" else [k, k + 1]
    ws = [w for j in used for w in leaves[j].values()]
    with torch.enable_grad():
        out = step(g, k, hk, c, scheme)
        grads = torch.autograd.grad(out, [hk, *ws], grad_outputs=adj, allow_unused=True)
    return grads[0], [(w, gw) for w, gw in zip(ws, grads[1:], strict=True)]


def _gradients(net, x, target, scheme: str, kinds: tuple[str, ...]) -> list[torch.Tensor]:
    """The weight gradients (R, P) of one forward pass, backward from each state list of ``kinds``: "stored"
    (the forward's activations) or "recovered" (recovered backward from h_N)."""
    _check_scheme(scheme)
    net = _as_resnet(net)
    leaves = [{f: w.detach().clone().requires_grad_(True) for f, w in node.items()} for node in node_weights(net)]
    flat = [w for node in leaves for w in node.values()]
    where = {id(w): i for i, w in enumerate(flat)}
    g = branch(net, leaves)
    steps, c = steps_and_scale(net.depth, net.beta, scheme)
    with torch.no_grad():
        h0 = _states(net, x)
        hs = trajectory(g, h0, steps, c, scheme)
    y = torch.as_tensor(target, dtype=torch.float64, device=h0.device)
    out = []
    for kind in kinds:
        with torch.no_grad():
            states = hs if kind == "stored" else reconstruction(g, hs[-1], steps, c, scheme)
        acc = [torch.zeros_like(w) for w in flat]
        adj = 2.0 * (hs[-1] - y) / h0.shape[-2]
        for k in range(steps - 1, -1, -1):
            adj, pairs = _layer_backward(g, k, states[k], adj, c, scheme, leaves)
            for w, gw in pairs:
                if gw is not None:  # a family the block's field does not read
                    acc[where[id(w)]] += gw
        out.append(torch.cat([a.reshape(h0.shape[0], -1) for a in acc], dim=1))
    return out


def weight_gradients(net, x, target, scheme: Scheme = "euler", *, reconstructed: bool = False):
    r"""Gradients of l = (1/n) sum_i ||h_N(x_i) - y_i||^2 with respect to every node's weights, per member:
    a (R, P) float64 tensor (P the number of layer weights). The backward pass recomputes each step
    from the stored activations, or (``reconstructed=True``) from activations recovered backward from
    h_N (the memory-free adjoint)."""
    return _gradients(net, x, target, scheme, ("recovered" if reconstructed else "stored",))[0]


def gradient_error(net, x, target, scheme: Scheme = "euler") -> torch.Tensor:
    """Relative error of the weight gradient computed with activations recovered backward (the
    memory-free adjoint) against the one with stored activations: ||g~ - g|| / ||g|| per member (R,),
    both from one forward pass."""
    exact, approx = _gradients(net, x, target, scheme, ("stored", "recovered"))
    return (approx - exact).norm(dim=1) / exact.norm(dim=1).clamp_min(1e-300)


def heun_gain(net, x) -> torch.Tensor:
    r"""Euler's reconstruction error over Heun's on the network's own weight nodes, per member (R,):
    about D^2 (grows with depth) when the weights are smooth in depth, O(1) when they are rough [S22]."""
    net = _as_resnet(net)
    return reconstruction_error(net, x, "euler") / reconstruction_error(net, x, "heun").clamp_min(1e-300)
