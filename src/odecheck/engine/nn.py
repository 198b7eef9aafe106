r"""odecheck's engine inside any PyTorch program: :class:`StackedResNet`, a ``torch.nn.Module``.

The module holds an ensemble of R residual networks of depth L with stacked weights, exactly as
:class:`odecheck.ResNet` does, and differentiates them with the engine's own backward pass (the
fused CPU kernels or the batched torch path), not autograd over a Python loop of layers. Any loss,
any ``torch.optim`` optimizer and any surrounding model work::

    import torch, odecheck.nn as onn
    net = onn.StackedResNet(depth=64, dim=16, width=32, activation="gelu", init="tied", ensemble=4,
                            train_io=True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    out = net(x)                         # (R, n, d')
    loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), labels.repeat(4))
    loss.backward(); opt.step()

Parameters are in the public layout: per-layer families (R, L, ...) (mlp: ``V`` (R, L, q, m),
``W`` (R, L, m, q); single: ``W`` (R, L, q, q), ``b`` (R, L, q), ``delta``; res1: ``V`` (R, L, q, q)),
and ``A`` (R, q, d), ``B`` (R, d', q), which are parameters when ``train_io=True`` and buffers
otherwise. Their memory is layer-major, so the engine reads them without a copy.

The factor L of gradient flow. [M24]'s flow moves the block weights at L times the rate of A and
B (dZ_k/dt = -L dl/dZ_k). ``torch.optim.SGD`` with one learning rate does not; to reproduce
:func:`odecheck.gradient_flow` step for step, give the per-layer families their own parameter
group with learning rate L * lr (:meth:`StackedResNet.flow_param_groups` builds both groups) and
use the mean-squared loss sum_r (1/n) sum_i ||F_r(x_i) - y_i||^2.

References
----------
[M24] Marion et al., ICLR 2024 (the gradient flow and its factor L).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from odecheck.core import layout
from odecheck.core._errors import invalid
from odecheck.engine import _kernels
from odecheck.engine.models import ResNet


class _EngineFunction(torch.autograd.Function):
    """F = net(x) with the engine's forward pass and its hand-written adjoint as the backward."""

    @staticmethod
    def forward(ctx, module: StackedResNet, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        shell = module._shell
        params = module._engine_params([t.detach() for t in tensors])
        ws = module._free_workspace(ctx)
        out, cache = _kernels.forward(shell, x.detach(), keep=True, params=params, reuse=ws)
        ctx.module, ctx.cache, ctx.params, ctx.x_shape, ctx.ws = module, cache, params, tuple(x.shape), ws
        ctx.save_for_backward(x, *tensors)  # in-place changes before backward are refused by autograd
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out: torch.Tensor):
        _, *tensors = ctx.saved_tensors  # raises if an input was modified in place since forward
        module = ctx.module
        shell = module._shell
        # the cache stays intact (retain_graph, gradcheck). The weight gradients are new tensors shaped
        # and strided like their parameters, so autograd takes them as .grad without a copy; the engine
        # writes them through their (contiguous) engine-layout views.
        public = {name: torch.empty_like(t) for name, t in zip(module._names, tensors, strict=True)
                  if name in shell.layered}
        out = {name: layout.to_internal(name, t, shell.layered) for name, t in public.items()}
        out = {name: t for name, t in out.items() if t.is_contiguous()}
        grads = _kernels.backward(shell, ctx.cache, g_out.contiguous(), params=ctx.params, reuse=ctx.ws,
                                  consume=False, out=out)
        gx = None
        if ctx.needs_input_grad[1]:
            gx = torch.matmul(grads["_h0"], ctx.params["A"])  # dl/dx = (dl/dh_0) A: (R, n, d)
            if len(ctx.x_shape) == 2:
                gx = gx.sum(0)
            elif ctx.x_shape[0] == 1:
                gx = gx.sum(0, keepdim=True)
        result = [None, gx]
        for i, name in enumerate(module._names):
            if not ctx.needs_input_grad[2 + i]:
                result.append(None)
            elif name in out and grads[name] is out[name]:
                result.append(public[name])  # the tensor itself, not a view of it
            else:
                result.append(layout.to_public(name, grads[name], shell.layered))
        return tuple(result)


class StackedResNet(nn.Module):
    r"""An ensemble of R residual networks of depth L as a ``torch.nn.Module``.

    Takes the keyword arguments of :class:`odecheck.ResNet` (block, depth, dim, width, activation,
    beta, init, io_init, train_io, delta, bias, ensemble, seed, dtype, device) and draws the same
    weights. ``forward(x)`` maps x (n, d) or (R, n, d) to (R, n, d') and is differentiable in x and
    in every parameter through the engine's own backward pass.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self._adopt(ResNet(**kwargs))

    @classmethod
    def from_resnet(cls, net: ResNet) -> StackedResNet:
        """A module holding a copy of ``net``'s weights and configuration."""
        if not isinstance(net, ResNet):
            raise invalid("net", type(net).__name__, "an odecheck.ResNet")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._adopt(net.clone())
        return module

    def _adopt(self, net: ResNet) -> None:
        self._shell = net  # configuration; its tensors are the module's (shared storage)
        self._names = tuple(net.weights)
        self._pool: list[tuple[dict, weakref.ref | None]] = []
        for name, t in net.weights.items():
            if name in net.trainable:
                self.register_parameter(name, nn.Parameter(t))  # a view: layer-major memory, public shape
            else:
                self.register_buffer(name, t)

    # at most this many workspaces (activation caches) are kept; a forward finding all of them held
    # by live graphs uses fresh memory. Two cover the usual loop, where the previous step's graph
    # is still referenced (by `loss`) when the next forward runs.
    POOL = 2

    def _free_workspace(self, ctx) -> dict:
        """A workspace no live autograd graph needs, now owned by ``ctx`` (released when ``ctx`` is
        freed, i.e. when its graph is)."""
        for i, (ws, owner) in enumerate(self._pool):
            if owner is None or owner() is None:
                self._pool[i] = (ws, weakref.ref(ctx))
                return ws
        ws: dict = {}
        if len(self._pool) < self.POOL:
            self._pool.append((ws, weakref.ref(ctx)))
        return ws

    def _engine_params(self, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The module's tensors (in ``_names`` order) in the engine's contiguous (L, R, ...) layout:
        views of the layer-major parameters, a copy only for a tensor someone made otherwise."""
        return {n: layout.to_internal(n, t, self._shell.layered).contiguous()
                for n, t in zip(self._names, tensors, strict=True)}

    def _tensor(self, name: str) -> torch.Tensor:
        return self._parameters[name] if name in self._parameters else self._buffers[name]

    # -- what it is
    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """Every weight in the public layout, like ``ResNet.weights`` (the module's own tensors)."""
        return {name: self._tensor(name) for name in self._names}

    @property
    def depth(self) -> int:
        return self._shell.depth

    @property
    def ensemble(self) -> int:
        return self._shell.ensemble

    @property
    def layered(self) -> tuple[str, ...]:
        """Names of the parameters with a layer axis (the ones the flow scales by L)."""
        return tuple(n for n in self._names if n in self._shell.layered)

    def config(self) -> dict:
        """The keyword arguments that rebuild this module's architecture (as ``ResNet.config``)."""
        cfg = self._shell.config()
        t = self._tensor(self._names[0])
        cfg["dtype"], cfg["device"] = str(t.dtype).replace("torch.", ""), str(t.device)
        return cfg

    def extra_repr(self) -> str:
        c = self.config()
        keys = ("block", "depth", "dim", "width", "activation", "beta", "init", "ensemble", "train_io")
        return ", ".join(f"{k}={c[k]!r}" for k in keys)

    def to_resnet(self) -> ResNet:
        """An :class:`odecheck.ResNet` with a copy of the current weights (for the estimators, the
        neural-ODE solver and the claims)."""
        net = self._shell.to(dtype=self._tensor(self._names[0]).dtype, device=self._tensor(self._names[0]).device)
        net.load_weights_({name: t.detach() for name, t in self.weights.items()})
        return net

    def flow_param_groups(self, lr: float) -> list[dict]:
        """Parameter groups for ``torch.optim.SGD`` that give the gradient flow's rates: the per-layer
        families at L * lr, A and B (when trained) at lr."""
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise invalid("lr", lr, "a positive float")
        layered = [p for n, p in self.named_parameters() if n in self.layered]
        rest = [p for n, p in self.named_parameters() if n not in self.layered]
        groups = [{"params": layered, "lr": lr * self.depth}]
        if rest:
            groups.append({"params": rest, "lr": lr})
        return groups

    # -- the pass
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) for every member: x (n, d) or (R, n, d) -> (R, n, d')."""
        first = self._tensor(self._names[0])
        if not isinstance(x, torch.Tensor):
            raise invalid("x", type(x).__name__, "a torch.Tensor")
        if x.ndim not in (2, 3) or x.shape[-1] != self._shell.input_dim:
            raise invalid("x", f"<shape {tuple(x.shape)}>", f"(n, {self._shell.input_dim}) or (R, n, "
                                                           f"{self._shell.input_dim})")
        if x.ndim == 3 and x.shape[0] not in (1, self.ensemble):
            raise invalid("x", f"<shape {tuple(x.shape)}>", f"leading ensemble axis 1 or R={self.ensemble}")
        if x.dtype != first.dtype or x.device != first.device:
            raise invalid("x", f"<{x.dtype} on {x.device}>", f"{first.dtype} on {first.device} like the weights")
        self._shell.dtype, self._shell.device = first.dtype, first.device  # follow module.to(...)
        tensors = [self._tensor(n) for n in self._names]
        if not torch.is_grad_enabled() or not (x.requires_grad or any(t.requires_grad for t in tensors)):
            return _kernels.forward(self._shell, x, keep=False, params=self._engine_params(tensors))[0]
        return _EngineFunction.apply(self, x, *tensors)


__all__ = ["StackedResNet"]
