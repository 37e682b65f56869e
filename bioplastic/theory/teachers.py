"""Linear teachers ``y = W* x (+ noise)`` for the teacher-student theory.

The student ``y_hat = W2 W1 x`` learns from a teacher whose singular value decomposition
``W* = U diag(s) V^T`` defines the *modes* of the task (Saxe, McClelland & Ganguli 2014, ICLR;
Hanut & Kadmon 2025, arXiv:2502.20580, section on the linear theory).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from bioplastic._checks import check_finite, check_positive_int

__all__ = ["Teacher", "as_teacher", "paper_teacher", "random_teacher"]

#: Singular values at or below ``RANK_TOL * s_max`` count as zero (numerical rank).
RANK_TOL = 1e-10


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A linear teacher ``y = W* x + noise_std * xi`` with ``x, xi`` white Gaussian.

    Parameters
    ----------
    weight : array-like, shape (n_outputs, n_inputs)
        The teacher map ``W*`` (stored as a float64 CPU tensor; the caller's array is copied, never modified).
    noise_std : float, default 0
        Standard deviation of the independent Gaussian output noise. The population loss of any student is
        at least ``floor = 0.5 * n_outputs * noise_std**2``.

    Attributes
    ----------
    U : torch.Tensor, shape (n_outputs, n_outputs)
        Left singular vectors (output modes), columns ordered by decreasing singular value.
    singular_values : torch.Tensor, shape (min(n_outputs, n_inputs),)
        ``s``, decreasing, >= 0.
    V : torch.Tensor, shape (n_inputs, n_inputs)
        Right singular vectors (input modes).
    rank : int
        Number of singular values above ``1e-10 * s_max`` (the number of teacher *modes*).

    Raises
    ------
    ValueError
        ``weight`` not 2-D, empty, or holding NaN / Inf; ``noise_std`` negative or not finite.
    """

    weight: torch.Tensor
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        w = torch.as_tensor(self.weight)
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise ValueError(f"teacher weight must be a non-empty 2-D matrix (n_outputs, n_inputs), "
                             f"got shape {tuple(w.shape)}")
        if not (w.is_floating_point() or w.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"teacher weight must be real numbers, got dtype {w.dtype}")
        check_finite("teacher weight", w)
        w = w.detach().to(device="cpu", dtype=torch.float64).clone()
        noise = self.noise_std
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"teacher noise_std must be a finite number >= 0, got {noise!r}")
        u, s, vh = torch.linalg.svd(w, full_matrices=True)
        u, vh = _fix_signs(u, s, vh)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "noise_std", float(noise))
        object.__setattr__(self, "U", u)
        object.__setattr__(self, "singular_values", s)
        object.__setattr__(self, "V", vh.T.contiguous())
        smax = float(s[0]) if s.numel() else 0.0
        object.__setattr__(self, "rank", int((s > RANK_TOL * smax).sum()) if smax > 0 else 0)

    @property
    def n_outputs(self) -> int:
        """``m``, the output dimension."""
        return int(self.weight.shape[0])

    @property
    def n_inputs(self) -> int:
        """``n``, the input dimension."""
        return int(self.weight.shape[1])

    @property
    def floor(self) -> float:
        """Population loss floor ``0.5 * n_outputs * noise_std**2`` (the loss of ``W*`` itself)."""
        return 0.5 * self.n_outputs * self.noise_std ** 2

    def rank_r_loss(self, r: int) -> float:
        """Population loss ``0.5 * sum_{j >= r} s_j^2 + floor`` of the best rank-``r`` map (Eckart-Young).

        A reference line, not a floor for a two-layer student trained with rank-``r`` feedback: its random
        initial weights let it use more than ``r`` directions (docs/theory.md).
        """
        r = check_positive_int("r", r, minimum=0)
        return 0.5 * float((self.singular_values[r:] ** 2).sum()) + self.floor

    def initial_loss(self) -> float:
        """Population loss of the zero map, ``0.5 ||W*||_F^2 + floor``."""
        return self.rank_r_loss(0)

    def __repr__(self) -> str:
        s = ", ".join(f"{v:.3g}" for v in self.singular_values[: min(6, self.rank)].tolist())
        more = ", ..." if self.rank > 6 else ""
        return (f"Teacher(n_outputs={self.n_outputs}, n_inputs={self.n_inputs}, rank={self.rank}, "
                f"singular_values=[{s}{more}], noise_std={self.noise_std})")


def _fix_signs(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic SVD signs: the largest-magnitude entry of each left singular vector is positive."""
    p = s.numel()
    idx = u[:, :p].abs().argmax(dim=0)
    signs = torch.sign(u[idx, torch.arange(p)])
    signs[signs == 0] = 1
    u = u.clone()
    vh = vh.clone()
    u[:, :p] *= signs
    vh[:p] *= signs[:, None]
    return u, vh


def as_teacher(teacher: Teacher | np.ndarray | torch.Tensor, noise_std: float | None = None) -> Teacher:
    """Return ``teacher`` if it is a :class:`Teacher`, else wrap a matrix ``W*`` (n_outputs, n_inputs).

    Raises
    ------
    ValueError
        As :class:`Teacher` (not 2-D, NaN / Inf, bad ``noise_std``).
    """
    if isinstance(teacher, Teacher):
        if noise_std is not None and noise_std != teacher.noise_std:
            return Teacher(teacher.weight, noise_std=noise_std)
        return teacher
    return Teacher(teacher, noise_std=0.0 if noise_std is None else noise_std)


def _haar_orthogonal(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian matrix with the sign correction of
    Mezzadri 2007, Notices AMS 54:592)."""
    g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1
    return q * d


def random_teacher(n_outputs: int, n_inputs: int, singular_values: Sequence[float] | np.ndarray | torch.Tensor,
                   *, seed: int = 0, noise_std: float = 0.0) -> Teacher:
    """A teacher ``W* = U diag(s) V^T`` with a chosen singular spectrum and Haar-random singular vectors.

    Parameters
    ----------
    n_outputs, n_inputs : int
        ``m`` and ``n``.
    singular_values : sequence of float, length p <= min(m, n)
        The spectrum ``s`` (sorted into decreasing order; zeros allowed). The teacher's rank is the number
        of non-zero entries.
    seed : int
        Seeds a private ``torch.Generator`` (same seed, same teacher).
    noise_std : float
        Output noise standard deviation (see :class:`Teacher`).

    Returns
    -------
    Teacher

    Raises
    ------
    ValueError
        Non-positive sizes, more singular values than ``min(m, n)``, negative or non-finite values.
    """
    m = check_positive_int("n_outputs", n_outputs)
    n = check_positive_int("n_inputs", n_inputs)
    s = torch.as_tensor(np.asarray(singular_values, dtype=np.float64)).flatten()
    if s.numel() < 1 or s.numel() > min(m, n):
        raise ValueError(f"singular_values must hold 1 to min(n_outputs, n_inputs) = {min(m, n)} values, "
                         f"got {s.numel()}")
    check_finite("singular_values", s)
    if bool((s < 0).any()):
        raise ValueError("singular_values must be >= 0")
    s = torch.sort(s, descending=True).values
    gen = torch.Generator().manual_seed(int(seed))
    u = _haar_orthogonal(m, gen)[:, : s.numel()]
    v = _haar_orthogonal(n, gen)[:, : s.numel()]
    return Teacher((u * s) @ v.T, noise_std=noise_std)


def paper_teacher(n_outputs: int = 64, n_inputs: int = 128, *, hidden: int = 64, rank: int | None = None,
                  seed: int = 0, noise_std: float = 0.0) -> Teacher:
    """The teacher of Hanut & Kadmon (2025): ``W* = G1 G2 / sqrt(hidden)``, optionally truncated to ``rank``.

    ``G1`` (n_outputs x hidden) and ``G2`` (hidden x n_inputs) are standard normal, drawn in that order from
    ``numpy.random.default_rng(seed)``; the authors used ``64 x 64`` and ``64 x 128`` (arXiv:2502.20580).
    With ``rank`` given, ``W*`` is replaced by its best rank-``rank`` approximation (truncated SVD). With the
    defaults and ``rank=4``, ``0.5 ||W*||_F^2 = 1153.9``: the initial loss 1154 of the reference simulation of
    docs/theory.md (n=128, k=64, m=64, teacher of rank 4).

    Parameters
    ----------
    n_outputs, n_inputs, hidden : int
        ``m``, ``n`` and the inner dimension of the Gaussian product.
    rank : int, optional
        Truncation rank, ``1 <= rank <= min(m, n, hidden)``; ``None`` keeps the full product.
    seed : int
        Seed of ``numpy.random.default_rng``.
    noise_std : float
        Output noise standard deviation.

    Raises
    ------
    ValueError
        Non-positive sizes or ``rank`` out of range.
    """
    m = check_positive_int("n_outputs", n_outputs)
    n = check_positive_int("n_inputs", n_inputs)
    h = check_positive_int("hidden", hidden)
    rng = np.random.default_rng(seed)
    g1 = rng.standard_normal((m, h))
    g2 = rng.standard_normal((h, n))
    w = torch.as_tensor(g1 @ g2 / math.sqrt(h))
    if rank is not None:
        rank = check_positive_int("rank", rank)
        if rank > min(m, n, h):
            raise ValueError(f"teacher rank {rank} out of range: at most min(n_outputs, n_inputs, hidden) = "
                             f"{min(m, n, h)}")
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        w = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return Teacher(w, noise_std=noise_std)
