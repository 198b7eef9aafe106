r"""The neural-ODE limit of a trained ResNet.

With weight functions Z^L(s) built from the stacked weights, the mlp network is the
explicit Euler scheme (step 1/L) of

    dH/ds = L alpha_L m^{-1/2} V(s) sigma(q^{-1/2} W(s) H),   H(0) = A x,   F(x) = B H(1)

(L alpha_L = 1 at beta = 1). ``constant`` interpolation uses Z^L(s) = Z_{min(floor(L s), L-1)}
(0-based), so that layer k acts on [k/L, (k+1)/L) exactly as in the network; ``linear``
interpolates the nodes s_k = k/(L-1). Solved by torchdiffeq with the layer boundaries
passed as ``jump_t`` so that no step straddles a discontinuity.

References
----------
[M24] Marion et al., ICLR 2024, Prop. 2 and Thm. 4.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from odecheck.core import layout
from odecheck.core._errors import OdecheckError, invalid
from odecheck.engine import blocks
from odecheck.engine.models import LAYER_FAMILIES, ResNet

Interpolation = Literal["constant", "linear"]


def _weights_at(net: ResNet, p64: dict[str, torch.Tensor], s: torch.Tensor, interpolation: str,
                bounds: torch.Tensor) -> dict[str, torch.Tensor]:
    L = net.depth
    fams = tuple(dict.fromkeys(LAYER_FAMILIES[net.block] + net.layer_families))
    if interpolation == "constant" or L == 1:
        k = int(torch.searchsorted(bounds, s.reshape(1), right=True).item()) if L > 1 else 0
        k = min(k, L - 1)
        return {f: p64[f][k] for f in fams}
    pos = float(s) * (L - 1)
    k0 = min(int(math.floor(pos)), L - 2)
    w = pos - k0
    return {f: (1 - w) * p64[f][k0] + w * p64[f][k0 + 1] for f in fams}


def _check_solver(method: str, interpolation: str, rtol, atol) -> None:
    from torchdiffeq._impl.odeint import SOLVERS

    if interpolation not in ("constant", "linear"):
        raise invalid("interpolation", interpolation, "'constant' or 'linear'")
    if method not in SOLVERS:
        raise invalid("method", method, f"a torchdiffeq method: {', '.join(sorted(SOLVERS))}")
    for name, val in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(val, (int, float)) and val > 0):
            raise invalid(name, val, "a positive float")


def _solver_options(method: str, bounds: torch.Tensor, L: int, max_steps: int | None) -> dict | None:
    """torchdiffeq options: adaptive solvers jump at the layer bounds within a step limit; fixed-step ones
    take 4 steps a layer."""
    adaptive = method in ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
    options = {"jump_t": bounds} if (adaptive and len(bounds)) else None
    if adaptive:
        options = {**(options or {}), "max_num_steps": max_steps if max_steps is not None else 200 * L + 10_000}
    if options is None and len(bounds) and method in ("rk4", "euler", "midpoint", "explicit_adams"):
        options = {"step_size": 1.0 / (4 * L)}
    return options


def neural_ode(net: ResNet, x, *, rtol: float = 1e-7, atol: float = 1e-9, method: str = "dopri5",
               interpolation: Interpolation = "constant", max_steps: int | None = None) -> torch.Tensor:
    """Solve the neural ODE with the network's weights as functions of s in [0, 1].

    Parameters
    ----------
    net : ResNet
    x : (n, d) or (R, n, d)
    rtol, atol : tolerances of the adaptive solver
    method : a torchdiffeq method ("dopri5", "dopri8", "bosh3", "rk4", ...)
    interpolation : "constant" or "linear"
    max_steps : step limit of adaptive solvers (default 200 L + 10000); exceeding it raises
        OdecheckError instead of running on

    Returns
    -------
    (R, n, d') in the network's dtype (solved in float64).
    """
    from torchdiffeq import odeint

    _check_solver(method, interpolation, rtol, atol)
    x = net.prepare_input(x)
    p64 = {k: layout.to_internal(k, v.to(torch.float64), net.layered) for k, v in net.weights.items()}
    L = net.depth
    bounds = torch.arange(1, L, dtype=torch.float64, device=net.device) / L
    if interpolation == "linear" and L > 1:
        bounds = torch.arange(1, L - 1, dtype=torch.float64, device=net.device) / (L - 1)

    block = blocks.get(net.block)

    def rhs(s, H):
        return block.vector_field(net, _weights_at(net, p64, s, interpolation, bounds), p64, H)

    H0 = torch.matmul(x.to(torch.float64), p64["A"].transpose(1, 2))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, device=net.device)
    options = _solver_options(method, bounds, L, max_steps)
    try:
        sol = odeint(rhs, H0, t, rtol=rtol, atol=atol, method=method, options=options)
    except AssertionError as e:
        if "max_num_steps" in str(e):
            raise OdecheckError(f"neural_ode: the adaptive solver needed more than {options['max_num_steps']} "
                                "steps (stiff or exploding dynamics); raise max_steps or loosen rtol/atol") from None
        raise
    HT = sol[-1]
    out = torch.bmm(HT, p64["B"].transpose(1, 2))
    return out.to(net.dtype)


def ode_distance(net: ResNet, x, **kwargs) -> torch.Tensor:
    r"""sup over the inputs of ||F^L(x_i) - F(x_i)||: (R,) (F the neural ODE, ``kwargs`` to :func:`neural_ode`)."""
    xin = net.prepare_input(x)
    disc = net.to(dtype=torch.float64)(xin.to(torch.float64))
    cont = neural_ode(net.to(dtype=torch.float64), xin.to(torch.float64), **kwargs)
    return (disc - cont).norm(dim=-1).amax(dim=-1)
