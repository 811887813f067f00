"""The continuous autoregressive network (CAN) for 2D XY configurations.

q(theta) = prod_i q(theta_i | theta_<i) in raster order, each conditional a mixture on the
circle (circular.py) whose parameters come from a masked PixelCNN (masked.py): an exclusive
first layer (half-width ``first_half_width``), ``depth - 1`` inclusive hidden layers
(half-width ``half_width``, ELU, optionally residual), and an inclusive 1x1 head.

Global O(2) symmetry, used exactly. The XY weight is invariant under theta -> theta + alpha,
so the exact marginal of the first site is uniform. The network fixes it so: theta_0 is
drawn uniformly, and every later site is modelled through its angle relative to site 0,
phi_i = (theta_i - theta_0 + pi) mod 2 pi (the shift by pi puts aligned spins mid-range,
away from the point where a Beta mixture's density can jump). The map theta -> (theta_0,
phi) has unit Jacobian, so

    log q(theta) = -log(2 pi) + sum_{i >= 1} log q_i(phi_i | phi_<i),

exact, normalised, and invariant under every global rotation: rotating a sample by a
uniform random angle changes neither q nor the target, so nothing is lost by it.

The other symmetries of XY, averaged over. For a group G of maps that leave the XY weight
unchanged, q_G(theta) = (1/|G|) sum_g q(g theta) is exact and normalised, sampled by drawing
theta from q and outputting g theta for a uniform random g, and (p being G-invariant, KL
convex) KL(q_G || p) <= KL(q || p): averaging can only bring q closer to p, at the cost of
|G| - 1 more log q passes per sample (log q_G(g theta) = log q_G(theta): one sum serves both).
The raster order breaks the lattice's symmetries, so q learns them only approximately and
the average pays: measured on 8x8 at T = 0.8 (300 s of training, 8192 proposals), the ESS
rose from 0.40 to 0.81 with the point group, 0.76 with the 4 half-lattice translations and
0.92 with both (|G| = 32); on 16x16 at T = 1.1 (the xy-can scan's network, 8192 proposals)
from 0.014 to 0.178 with the point group, F_q per site -2.54307(7) -> -2.54594(4), i.e. KL
lower by 0.67 nats. The groups, combined as a product:
  * ``reflect=True``: theta -> -theta (the Z2 of the spins);
  * ``point_group=True``: the lattice's rotations by 90 degrees and reflections (D4, 8
    elements; on a rectangular lattice the identity, the two axis mirrors and the rotation
    by 180 degrees);
  * ``translations=k``: the k x k translations by multiples of (H / k, W / k); k divides
    both extents.
(Maps that coincide, as on an extent of 2, are kept once.) They are attributes: a network
trained without them may be averaged afterwards (as lftaccel.reproduce.xy_can does); set
before training, the training averages too, at |G| log q passes with gradients per step.

The network's input at site j is (cos, sin) of theta_j - theta_0, zero where masked.

Sampling: N sequential conditionals. ``sample(n, cache=True)`` (default) keeps every layer's
activations and, after each site is drawn, recomputes only the activations that depend on
it (the forward light cone of that site through the layers, precomputed); ``cache=False``
reruns the whole network per site. Both give the same draws from the same seed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..._kernels import check_int
from .circular import make_conditional
from .masked import PeriodicMaskedConv, dependency_matrix, pad_site

__all__ = ["CAN"]

LOG_TWO_PI = math.log(2.0 * math.pi)


class CAN(torch.nn.Module):
    def __init__(self, shape, *, conditional: str = "vonmises", n_components: int = 4, channels: int = 16,
                 depth: int = 3, half_width: int = 1, first_half_width: int = 2, residual: bool = True,
                 reflect: bool = False, point_group: bool = False, translations: int = 1, dtype=torch.float32):
        super().__init__()
        shape = tuple(shape)
        if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 2 for s in shape):
            raise ValueError(f"shape must be two extents >= 2, got {shape!r}")
        for value, name, low in ((channels, "channels", 1), (depth, "depth", 1), (half_width, "half_width", 0),
                                 (first_half_width, "first_half_width", 1)):
            check_int(value, name, low=low)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be True or False, got {residual!r}")
        self.shape, self.n_sites, self.residual = shape, shape[0] * shape[1], residual
        self.reflect, self.point_group, self.translations = reflect, point_group, translations
        self._symmetry_group()  # validates the three
        self.conditional = make_conditional(conditional, n_components)
        self.first = PeriodicMaskedConv(shape, 2, channels, first_half_width, exclusive=True, dtype=dtype)
        self.hidden = torch.nn.ModuleList(PeriodicMaskedConv(shape, channels, channels, half_width, exclusive=False,
                                                             dtype=dtype) for _ in range(depth - 1))
        self.head = PeriodicMaskedConv(shape, channels, self.conditional.n_params, 0, exclusive=False, dtype=dtype)
        self._cones = None

    @property
    def dtype(self):
        return self.head.weight.dtype

    @property
    def device(self):
        return self.head.weight.device

    # ---- the network -------------------------------------------------------------------
    def _features(self, rel):
        """(B, N) relative angles theta - theta_0 -> (N, B, 2) network input (site-major)."""
        return torch.stack([torch.cos(rel.T), torch.sin(rel.T)], -1).to(self.dtype)

    def _params(self, rel):
        """Conditional parameters at every site, (B, N, n_params)."""
        h = self.first(self._features(rel))
        for layer in self.hidden:
            h = layer(F.elu(h)) + (h if self.residual else 0)
        return self.head(F.elu(h)).transpose(0, 1)

    def _log_prob_ordered(self, theta):
        theta = theta.flatten(1).double()
        rel = theta - theta[:, :1]
        phi = torch.remainder(rel + math.pi, 2.0 * math.pi)
        params = self._params(rel)
        return -LOG_TWO_PI + self.conditional.log_prob(params[:, 1:], phi[:, 1:]).sum(1)

    def _symmetry_group(self):
        """The distinct maps theta -> g theta of the averaged group (identity first), from the
        attributes reflect, point_group and translations (validated here)."""
        for value, name in ((self.reflect, "reflect"), (self.point_group, "point_group")):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        k = check_int(self.translations, "translations")
        if self.shape[0] % k or self.shape[1] % k:
            raise ValueError(f"translations must divide both extents {self.shape}, got {k}")
        return _symmetry_maps(self.shape, bool(self.reflect), bool(self.point_group), k)

    def _log_prob_averaged(self, theta, known=None):
        """log q_G(theta) = logsumexp_g log q(g theta) - log |G|; ``known``: the bare log q(theta),
        already computed."""
        group = self._symmetry_group()
        if known is not None and (not isinstance(known, torch.Tensor) or tuple(known.shape) != (len(theta),)):
            got = tuple(known.shape) if isinstance(known, torch.Tensor) else type(known).__name__
            raise ValueError(f"log_q must be a tensor ({len(theta)},), one per configuration, got {got}")
        lq = [known if known is not None else self._log_prob_ordered(theta)]
        lq += [self._log_prob_ordered(g(theta)) for g in group[1:]]
        return lq[0] if len(group) == 1 else torch.logsumexp(torch.stack(lq), 0) - math.log(len(group))

    def log_prob(self, theta):
        """Exact log q(theta), float64, for (B, H, W) angles (any real values: they are taken mod 2 pi),
        averaged over the symmetry group set by reflect, point_group and translations."""
        self._check(theta)
        return self._log_prob_averaged(theta)

    def _check(self, theta):
        if not isinstance(theta, torch.Tensor) or theta.dim() != 3 or tuple(theta.shape[1:]) != self.shape:
            got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise ValueError(f"theta must be a tensor (batch, {self.shape[0]}, {self.shape[1]}), got {got}")
        if not theta.is_floating_point():  # (complex angles lost their imaginary part, integers were taken)
            raise TypeError(f"theta must be real floating-point angles, got dtype {theta.dtype}")
        if theta.shape[0] < 1:
            raise ValueError(f"theta has an empty batch: shape {tuple(theta.shape)}")
        if not torch.isfinite(theta).all():
            raise ValueError("theta contains non-finite angles")

    # ---- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, cache: bool = True):
        """(theta (n, H, W) float64 in [0, 2 pi), log q (n,) float64), from torch's global RNG."""
        check_int(n, "n")
        N, dev = self.n_sites, self.device
        theta0 = 2.0 * math.pi * torch.rand(n, dtype=torch.float64, device=dev)
        phi = torch.full((n, N), math.pi, dtype=torch.float64, device=dev)  # site 0: rel = 0
        log_q = torch.full((n,), -LOG_TWO_PI, dtype=torch.float64, device=dev)
        step = self._cached_steps(phi) if cache else self._uncached_steps(phi)
        for i in range(1, N):
            params = step(i)
            phi[:, i] = self.conditional.sample(params)
            log_q += self.conditional.log_prob(params, phi[:, i])
        theta = torch.remainder(theta0[:, None] + phi - math.pi, 2.0 * math.pi).view(n, *self.shape)
        return self.symmetrise(theta, log_q)

    @torch.no_grad()
    def symmetrise(self, theta, log_q):
        """Draws from the bare q (the network without averaging), with their log q, turned into
        draws from q_G, with log q_G, for the group the attributes set: each theta is replaced
        by g theta for a uniform random g (torch's global RNG), and log q_G, the same for
        theta and g theta, takes |G| - 1 more passes. ``sample`` does this itself; call it to
        keep the bare log q as well."""
        self._check(theta)
        group = self._symmetry_group()
        if len(group) == 1:
            return theta, log_q
        log_q = self._log_prob_averaged(theta, known=log_q)
        pick = torch.randint(len(group), (len(theta),), device=theta.device)
        out = theta.clone()
        for j, g in enumerate(group[1:], start=1):
            rows = pick == j
            if rows.any():
                out[rows] = g(theta[rows])
        return torch.remainder(out, 2.0 * math.pi), log_q

    def _uncached_steps(self, phi):
        def step(i):
            return self._params(phi - math.pi)[:, i]
        return step

    def _cached_steps(self, phi):
        """Incremental evaluation: activations of every layer are kept; when site i - 1 has
        been drawn, each layer recomputes only the sites whose value depends on it."""
        cones = self._light_cones()
        # each layer's output h and its activation elu(h), the next layer's input, are kept
        # site-major with the zero row appended
        x = pad_site(self._features(phi - math.pi))
        hs = [pad_site(self.first.at(x, None))]
        acts = [F.elu(hs[0])]
        for layer in self.hidden:
            hs.append(pad_site(layer.at(acts[-1], None) + (hs[-1][:-1] if self.residual else 0)))
            acts.append(F.elu(hs[-1]))

        def step(i):
            s = i - 1  # the site drawn last (site 0 is known from the start: already in x)
            if s > 0:
                x[s] = self._features(phi[:, s:s + 1] - math.pi)[0]
                sites = cones[0][s]
                hs[0][sites] = self.first.at(x, sites)
                acts[0][sites] = F.elu(hs[0][sites])
                for k, layer in enumerate(self.hidden, start=1):
                    sites = cones[k][s]
                    hs[k][sites] = layer.at(acts[k - 1], sites) + (hs[k - 1][sites] if self.residual else 0)
                    acts[k][sites] = F.elu(hs[k][sites])
            return self.head.at(acts[-1], self._site[i:i + 1])[0]
        return step

    def _light_cones(self):
        """cones[k][s]: the sites whose layer-k activation depends on the input at site s."""
        if self._cones is None or self._cones[0][0].device != self.device:
            self._site = torch.arange(self.n_sites, device=self.device)
            dep = dependency_matrix(self.first).float()
            cones = [dep]
            for layer in self.hidden:
                step = dependency_matrix(layer).float()
                dep = ((step @ dep) > 0).float() + (dep if self.residual else 0)
                cones.append((dep > 0).float())
            self._cones = [[c[:, s].nonzero()[:, 0] for s in range(self.n_sites)] for c in cones]
        return self._cones


@functools.lru_cache(maxsize=None)
def _symmetry_maps(shape, reflect, point_group, k):
    """The distinct maps of CAN._symmetry_group (a module-level cache: no functions are
    stored on the model, which stays picklable)."""
    H, W = shape
    shifts = [(a * H // k, b * W // k) for a in range(k) for b in range(k)]
    if not point_group:
        points = [lambda t: t]
    elif H == W:
        points = [lambda t, r=r, f=f: torch.rot90(t.transpose(1, 2) if f else t, r, (1, 2))
                  for f in (False, True) for r in range(4)]
    else:
        points = [lambda t, d=d: torch.flip(t, d) if d else t for d in ((), (1,), (2,), (1, 2))]
    signs = (1.0, -1.0) if reflect else (1.0,)
    maps = [lambda t, sh=sh, pt=pt, sg=sg: sg * pt(torch.roll(t, sh, (1, 2)) if any(sh) else t)
            for sg in signs for pt in points for sh in shifts]
    # keep each distinct map once (site labels 1..N, the sign marks the spin reflection);
    # the list is a group's image, so every map repeats equally often and dropping the
    # repeats leaves q_G unchanged, only cheaper
    labels = torch.arange(1.0, H * W + 1.0).view(1, H, W)
    seen, group = set(), []
    for g in maps:
        image = tuple(g(labels).flatten().tolist())
        if image not in seen:
            seen.add(image)
            group.append(g)
    return tuple(group)
