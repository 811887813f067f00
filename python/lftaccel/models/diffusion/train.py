"""Training data and training for the score network.

Data. The ensembles `lftaccel sample` writes (HDF5, lftaccel.io). Train and test sets are
split by *chain*: configurations of one Markov chain are correlated, so a test set drawn from
the same chains as the training set is not independent of it. ``split_by_chain`` keeps whole
chains apart (by default the last quarter of the chains for testing); configurations from a
separate run can serve as the test set too.

Scaling. The network works on phi / c with c the root mean square of the training field
(one number: the Z2 and translation symmetries survive); ``FieldScale`` encodes data and
decodes samples (phi = c y). The training checkpoint does not hold c or the SDE's parameters:
the caller keeps them beside it (the reproduction writes them to its summary).

Augmentation. The phi^4 weight is invariant under lattice translations and phi -> -phi; each
batch is translated by a random shift and flipped in sign with probability 1/2 (``augment``),
which multiplies the data by the symmetry group at no cost and keeps the learnt score
closer to symmetric (it is not made exactly equivariant).

Training: the denoising score-matching loss (unet.dsm_loss) with Adam (cosine decay) and an
exponential moving average of the weights (``ema`` decay per step after a warm-up in which
the decay is (1 + n) / (10 + n), so that a short training does not average in its untrained
start; torch's AveragedModel):
the EMA copy is the one to sample with. Clipping, a tqdm bar, checkpoints with the EMA
weights and resume come from the shared loop (models._loop.optimise).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..._kernels import check_int
from .._loop import TrainResult, data_digest, optimise
from .sde import check_eps
from .unet import dsm_loss

__all__ = ["split_by_chain", "FieldScale", "train"]


def split_by_chain(ens, test_chains: int | None = None):
    """(train, test) configuration arrays of an lftaccel.io.Ensemble, whole chains each:
    the last ``test_chains`` chains (default: a quarter, at least one) form the test set."""
    nc = ens.n_chains
    k = max(1, nc // 4) if test_chains is None else check_int(test_chains, "test_chains")
    if not 1 <= k < nc:
        raise ValueError(f"test_chains must be in [1, {nc - 1}] for a run of {nc} chains, got {k}")
    test = ens.chain >= nc - k
    return ens.configs[~test], ens.configs[test]


@dataclasses.dataclass
class FieldScale:
    """phi = c y: the network sees y = phi / c, with c the training set's RMS field."""

    c: float

    @classmethod
    def fit(cls, configs) -> "FieldScale":
        c = float(np.sqrt(np.mean(np.square(np.asarray(configs, dtype=np.float64)))))
        if not (c > 0 and np.isfinite(c)):
            raise ValueError(f"cannot scale data whose RMS is {c}")
        return cls(c)

    def encode(self, phi):
        return phi / self.c

    def decode(self, y):
        return y * self.c


def _augment(x, gen):
    """A random translation per batch and a sign flip per configuration (phi^4's symmetries)."""
    shifts = [int(torch.randint(n, (1,), generator=gen)) for n in x.shape[1:]]
    x = torch.roll(x, shifts, tuple(range(1, x.dim())))
    sign = torch.where(torch.rand(x.shape[0], generator=gen) < 0.5, -1.0, 1.0).to(x)
    return x * sign.view(-1, *([1] * (x.dim() - 1)))


def _ema_with_warmup(decay: float):
    """EMA update with decay min(decay, (1 + n) / (10 + n)) at the n-th update. A fixed decay
    of 0.999 keeps 0.999^n of the initial (untrained) weights: 22% after 1500 steps, which
    measured on 8x8 phi^4 (kappa = 0.21) doubled chi2 of the samples (5.9 against 2.4 from
    the raw weights and 2.5 from HMC)."""
    def avg(averaged, current, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        return d * averaged + (1.0 - d) * current

    return avg


def train(model, data, *, steps: int, batch_size: int = 64, lr: float = 2e-4, ema: float = 0.999,
          eps: float = 1e-5, augment: bool = True, clip: float = 1.0, seed: int = 0, checkpoint=None,
          checkpoint_every: int = 200, resume: bool = False, time_limit: float | None = None,
          progress: bool = True, schedule: str = "cosine", extra: dict | None = None):
    """Trains ``model`` (a ScoreUNet) on ``data`` (n, H, W), already scaled (FieldScale.encode),
    and returns (TrainResult, ema_model): the EMA copy, an AveragedModel whose ``.module`` is
    a ScoreUNet, is what sampling should use. ``extra`` adds objects with state_dict /
    load_state_dict to the checkpoint (the model file's description, say)."""
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", low=0)
    check_eps(eps)
    if not (0.0 <= ema < 1.0):
        raise ValueError(f"ema must be in [0, 1), got {ema!r}")
    data = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    data = data.to(dtype=model.dtype, device=next(model.parameters()).device)
    if data.dim() != 3 or tuple(data.shape[1:]) != model.shape:
        raise ValueError(f"data must be (n, {model.shape[0]}, {model.shape[1]}), got {tuple(data.shape)}")
    if len(data) < batch_size:
        raise ValueError(f"data has {len(data)} configurations, fewer than batch_size = {batch_size}")
    from torch.optim.swa_utils import AveragedModel

    averaged = AveragedModel(model, avg_fn=_ema_with_warmup(ema))
    gen = torch.Generator().manual_seed(seed)

    def loss_step(step):
        idx = torch.randint(len(data), (batch_size,), generator=gen).to(data.device)
        x0 = data[idx]
        if augment:
            x0 = _augment(x0, gen)
        loss = dsm_loss(model, model.sde, x0, eps=eps)
        return loss, {"loss": float(loss.detach())}

    res: TrainResult = optimise(model, loss_step, steps=steps, lr=lr, clip=clip, seed=seed, checkpoint=checkpoint,
                                checkpoint_every=checkpoint_every, resume=resume, time_limit=time_limit,
                                progress=progress, schedule=schedule, tag="diffusion-dsm", desc="score network",
                                generator=gen, after_step=lambda: averaged.update_parameters(model),
                                extra={"ema": averaged, **(extra or {})},
                                settings={"batch_size": batch_size, "eps": eps, "augment": augment, "ema": ema,
                                          "data_sha256": data_digest(data)})
    return res, averaged
