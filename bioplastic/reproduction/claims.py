"""The claims of Hanut & Kadmon (2025, arXiv:2502.20580) that ``bioplastic reproduce`` checks.

Each :class:`Claim` is one small declarative object: an id, the statement, the measured quantity (one value per
seed, read from its experiment's result by ``measure``), a numeric :class:`~bioplastic.reproduction.verdict.Criterion`
fixed here before anything runs, and the paper's or the authors' published value of the same quantity where one
exists. Thresholds were chosen from the statements of the paper (and, for "falls behind", from the size of the
effects the paper and BioTorch report), never from our own runs.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import xarray as xr

from bioplastic.reproduction.experiments import EXPERIMENTS, Context, NotAvailable, analysis_module
from bioplastic.reproduction.verdict import Criterion

__all__ = ["Claim", "CLAIMS", "claim_ids"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checkable claim.

    Attributes
    ----------
    id : str
        Short identifier (``--claims``).
    statement : str
        The claim in words.
    quantity : str
        What is measured, per seed, with its unit.
    criterion : Criterion
    experiment : str
        Key of :data:`bioplastic.reproduction.experiments.EXPERIMENTS` whose result ``measure`` reads.
    measure : callable
        ``measure(result, ctx) -> xarray.DataArray`` over ``seed`` (or a 1-D array): the quantity per seed.
    published : float
        The published value of the same quantity (NaN where the paper gives none).
    published_source : str
        Where the published value comes from, or why there is none.
    deterministic : bool
        The quantity does not depend on the seed (judged without an interval).
    """

    id: str
    statement: str
    quantity: str
    criterion: Criterion
    experiment: str
    measure: Callable[[xr.Dataset, Context], xr.DataArray | np.ndarray]
    published: float = math.nan
    published_source: str = ""
    deterministic: bool = False

    def __post_init__(self):
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"claim {self.id!r}: unknown experiment {self.experiment!r}; known: "
                             + ", ".join(EXPERIMENTS))


# ---------------------------------------------------------------------------------------------- measures
def _loss_fraction(rule: str, rank: str):
    """Final loss / initial loss of ``rule`` at the low rank (``"low"``: the smallest rank, ``"d"``: the largest)."""
    def measure(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
        r = ds["rank"].values.min() if rank == "low" else ds["rank"].values.max()
        loss = ds["loss"].sel(rule=rule, rank=r)
        return loss.isel(step=-1) / loss.isel(step=0)
    return measure


def _worst_loss_fraction_at_d(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    loss = ds["loss"].sel(rank=ds["rank"].values.max(), rule=["ldfa_fixed", "ldfa_q_only", "ldfa_normative"])
    return (loss.isel(step=-1) / loss.isel(step=0)).max("rule")


def _top_mode_gap(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    r = int(ds["rank"].values.min())
    final = ds["mode_strength"].sel(rank=r).isel(step=-1).isel(mode=slice(0, r))
    return (final.sel(rule="bp") - final.sel(rule="ldfa_normative")).max("mode")


def _final_accuracy(ds: xr.Dataset, rule: str, rank: int) -> xr.DataArray:
    return 100 * ds["test_accuracy"].sel(rule=rule, rank=rank).isel(epoch=-1)


def _mnist_bp_minus_adaptive(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    return _final_accuracy(ds, "bp", -1) - _final_accuracy(ds, "ldfa_normative", 10)


def _mnist_adaptive_minus_fixed(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    return _final_accuracy(ds, "ldfa_normative", 3) - _final_accuracy(ds, "ldfa_fixed", 3)


def _cnn_bp_minus_ldfa(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    from bioplastic.training.results import fraction_rank

    return _final_accuracy(ds, "bp", -1) - _final_accuracy(ds, "ldfa_normative", fraction_rank(0.25))


def _cnn_fa_dfa_behind(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    bp = _final_accuracy(ds, "bp", -1)
    return np.minimum(bp - _final_accuracy(ds, "fa", -1), bp - _final_accuracy(ds, "dfa", -1))


def _vit_ranks(ds: xr.Dataset) -> list[int]:
    return sorted(int(r) for r in ds["rank"].values if int(r) > 0)


def _vit_bp_minus_top(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    return _final_accuracy(ds, "bp", -1) - _final_accuracy(ds, "ldfa_normative", _vit_ranks(ds)[-1])


def _vit_rank_slope(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    ranks = _vit_ranks(ds)
    return _final_accuracy(ds, "ldfa_normative", ranks[-1]) - _final_accuracy(ds, "ldfa_normative", ranks[0])


def _flop_ratio_low_rank(ds: xr.Dataset, ctx: Context) -> np.ndarray:
    ratio = ds["weight_flop_ratio"].isel(model=0, feedback_learning=0)
    return np.atleast_1d(float(ratio.sel(rank=ratio["rank"].values.min())))


def _flops_to_90(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    """1 - FLOPs of LDFA (highest rank) / FLOPs of BP to reach 90 % of BP's final accuracy, paired by seed."""
    from bioplastic.training.flops import flops_to_target

    res = flops_to_target(ds, target="bp", fraction=0.9)
    top = _vit_ranks(ds)[-1]
    return 1 - res["flops_to_target"].sel(rule="ldfa_normative", rank=top) / res["flops_to_target"].sel(rule="bp",
                                                                                                           rank=-1)


def _saving_to_target(model: str):
    """Per seed, 1 - FLOPs of LDFA / FLOPs of BP to reach the target accuracy on ``model``."""
    def measure(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
        f = ds["flops_to_target"].sel(model=model)
        return 1 - f.sel(rule="ldfa") / f.sel(rule="bp")
    return measure


def _rf_median_csi(ds: xr.Dataset, label: str) -> xr.DataArray:
    """Per seed, the median centre-surround index over the driven units of the retina's output layer."""
    from bioplastic.reproduction.experiments import RF_LAYER

    return ds["centre_surround_index"].sel(layer=RF_LAYER, rule=label).median("neuron", skipna=True)


def _rf_lowest(ds: xr.Dataset, prefix: str) -> str:
    labels = [str(x) for x in ds["rule"].values if str(x).startswith(prefix)]
    if not labels:
        raise NotAvailable(f"the receptive-field result has no {prefix}* condition")
    return sorted(labels, key=lambda s: int(s[len(prefix):]))[0]


def _rf_csi_difference(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    return _rf_median_csi(ds, _rf_lowest(ds, "ldfa_r")) - _rf_median_csi(ds, "bp")


def _rf_bottleneck_csi_difference(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    return _rf_median_csi(ds, _rf_lowest(ds, "bp_bottleneck")) - _rf_median_csi(ds, "bp")


def _it_bp_minus_ldfa(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    best = ds["similarity_human_it"].max("layer")
    ldfa_rank = [int(r) for r in ds["rank"].values if int(r) > 0][0]
    return best.sel(rule="bp", rank=-1) - best.sel(rule="ldfa_normative", rank=ldfa_rank)


def _log_slope(r_star: xr.DataArray, dim: str) -> xr.DataArray:
    """Per seed, the least-squares slope of log r* against log ``dim`` (inf r*: not reached, gives NaN)."""
    x = np.log(r_star[dim].values.astype(float))
    y = np.log(r_star.transpose(dim, "seed").values.astype(float))
    xc = x - x.mean()
    ok = np.isfinite(y).all(axis=0)
    slope = np.full(y.shape[1], np.nan)
    yo = y[:, ok]
    slope[ok] = (xc[:, None] * (yo - yo.mean(axis=0))).sum(axis=0) / (xc ** 2).sum()
    return xr.DataArray(slope, dims=("seed",), coords={"seed": r_star["seed"].values})


def _r_star_against_k(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    base = int(ds.attrs["base_width"])
    r = ds["r_star_per_seed"].sel(mode="normative", width=base)
    return _log_slope(r.sel(K=[k for k in r["K"].values if np.isfinite(ds["bp_accuracy"].sel(K=k, width=base)).any()]),
                      "K")


def _r_star_against_width(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    k = int(ds.attrs["width_task_dim"])
    r = ds["r_star_per_seed"].sel(mode="normative", K=k)
    return _log_slope(r.sel(width=[w for w in r["width"].values if np.isfinite(ds["bp_accuracy"].sel(K=k, width=w)).any()]),
                      "width")


def _narrow_minus(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    k, base = int(ds.attrs["width_task_dim"]), int(ds.attrs["base_width"])
    ldfa = ds["accuracy"].sel(mode="normative", K=k, width=base)
    narrow = ds["narrow_bp_accuracy"].sel(K=k)
    ranks = [r for r in ds["rank"].values if np.isfinite(narrow.sel(rank=r)).all() and np.isfinite(ldfa.sel(rank=r)).all()
             and r < base]
    return 100 * (ldfa.sel(rank=ranks) - narrow.sel(rank=ranks)).mean("rank")


def _rate_twin_gap(ds: xr.Dataset, ctx: Context) -> xr.DataArray:
    """Autograd twin minus rate network, final test accuracy (pp), per seed (:func:`bioplastic.rate.twin.compare_with_twin`)."""
    return ds["gap"]


# ------------------------------------------------------------------------------------------------ claims
CLAIMS: tuple[Claim, ...] = (
    Claim("linear_fixed_stalls",
          "Linear theory: fixed random rank-r feedback with r < d (the teacher's rank) stalls far above backprop's "
          "loss.",
          "final loss / initial loss of LDFA with fixed feedback at r = 2 < d = 4",
          Criterion("at_least", 0.1), "linear_theory", _loss_fraction("ldfa_fixed", "low"),
          published_source="the paper shows the plateau in a figure (no number); the reference simulation at the "
                           "paper's sizes (bioplastic.theory.paper_teacher, docs/theory.md): 464 / 1154 = 0.40"),
    Claim("linear_q_only_stalls",
          "Linear theory: feedback whose column space Q learns but whose P stays fixed (q_only) also stalls for "
          "r < d: learning the column space is not enough.",
          "final loss / initial loss of LDFA q_only at r = 2 < d = 4",
          Criterion("at_least", 0.1), "linear_theory", _loss_fraction("ldfa_q_only", "low"),
          published_source="figure only in the paper"),
    Claim("linear_adaptive_top_modes",
          "Linear theory: adaptive (normative) feedback with r < d learns the top-r modes of the teacher as "
          "backprop does.",
          "largest shortfall of the final mode strength [U^T W2 W1 V]_jj / s_j of normative LDFA behind BP's, "
          "over the top r = 2 modes",
          Criterion("at_most", 0.05), "linear_theory", _top_mode_gap,
          published_source="figure only in the paper"),
    Claim("linear_rank_d_matches_bp",
          "Linear theory: with r >= d every LDFA variant (fixed, q_only, normative) learns the teacher as backprop "
          "does.",
          "final loss / initial loss at r = d = 4, the worst of fixed, q_only and normative LDFA",
          Criterion("at_most", 0.01), "linear_theory", _worst_loss_fraction_at_d,
          published_source="figure only in the paper"),
    Claim("mnist_adaptive_rank_d_matches_bp",
          "MLP on MNIST: adaptive LDFA with r = d = 10 feedback units matches backprop.",
          "BP minus adaptive LDFA (r = 10) final test accuracy, percentage points, paired by seed",
          Criterion("at_most", 1.0, "pp"), "mnist_mlp", _mnist_bp_minus_adaptive,
          published_source="the paper shows the MLP result on CIFAR-10 (accuracy saturates near BP at r about "
                           "d); no MNIST number"),
    Claim("mnist_fixed_low_rank_worse",
          "MLP on MNIST: fixed random low-rank feedback (r = 3 < d) is worse than adaptive feedback of the same "
          "rank.",
          "adaptive minus fixed LDFA (r = 3) final test accuracy, percentage points, paired by seed",
          Criterion("at_least", 1.0, "pp"), "mnist_mlp", _mnist_adaptive_minus_fixed,
          published_source="no MNIST number in the paper"),
    Claim("task_dim_rank_tracks_classes",
          "Task dimensionality: the feedback rank LDFA needs to reach backprop grows with the number of classes K.",
          "per seed, the least-squares slope of log r* against log K (adaptive LDFA at the base width; r*: the "
          "minimal sufficient rank of bioplastic.training.task_dimensionality); 1 where r* is proportional to K",
          Criterion("at_least", 0.5), "task_dimensionality", _r_star_against_k,
          published_source="CIFAR-100 subsets of K classes (figure only)"),
    Claim("task_dim_rank_not_width",
          "Task dimensionality: the feedback rank LDFA needs does not grow with the network's width.",
          "per seed, the least-squares slope of log r* against log width (adaptive LDFA at a fixed K); 1 where r* "
          "is proportional to the width, 0 where it does not depend on it",
          Criterion("at_most", 0.5), "task_dimensionality", _r_star_against_width,
          published_source="the paper's width figure (figure only)"),
    Claim("task_dim_narrow_worse",
          "Task dimensionality: narrowing the network to width r hurts far more than constraining its feedback to "
          "rank r.",
          "adaptive LDFA at rank r (base width) minus BP on a network of hidden width r, final test accuracy in "
          "percentage points, averaged over the tested r below the base width, paired by seed",
          Criterion("at_least", 2.0, "pp"), "task_dimensionality", _narrow_minus,
          published_source="MLP on CIFAR-10 (figure only)"),
    Claim("cnn_ldfa_tracks_bp",
          "CNN on CIFAR-10: LDFA with every conv layer's rank at width/4 tracks backprop.",
          "BP minus LDFA (width/4) final test accuracy, percentage points, paired by seed",
          Criterion("at_most", 2.0, "pp"), "cnn_cifar", _cnn_bp_minus_ldfa,
          published_source="the paper: LDFA at width/2, /4, /8 reaches BP level on the VGG-like CNN (figure)"),
    Claim("cnn_fa_dfa_behind",
          "CNN on CIFAR-10: feedback alignment and direct feedback alignment fall behind backprop.",
          "BP minus the better of FA and DFA, final test accuracy, percentage points, paired by seed",
          Criterion("at_least", 2.0, "pp"), "cnn_cifar", _cnn_fa_dfa_behind,
          published=23.53,
          published_source="BioTorch (Sanfiz & Akrout 2021), ResNet-20 on CIFAR-10: top-1 error BP 8.63 %, FA "
                           "32.16 %, DFA 45.94 % (a different network)"),
    Claim("vit_high_rank_near_bp",
          "ViT on CIFAR-10: LDFA at the highest rank tried comes within a point or two of backprop.",
          "BP minus LDFA at the highest rank (32 on CPU, 48 on GPU), final test accuracy, percentage points, "
          "paired by seed",
          Criterion("at_most", 2.0, "pp"), "vit_cifar", _vit_bp_minus_top,
          published=0.57,
          published_source="authors' ViT table (250 epochs, mean of 5): BP 91.34 %, r=32 90.77 % (r=48 91.26 %)"),
    Claim("vit_accuracy_rises_with_rank",
          "ViT on CIFAR-10: accuracy rises with the feedback rank.",
          "LDFA accuracy at the highest minus the lowest rank tried, percentage points, paired by seed",
          Criterion("at_least", 0.5, "pp"), "vit_cifar", _vit_rank_slope,
          published=1.37,
          published_source="authors' ViT table: r=32 90.77 % minus r=16 89.40 % (r=48 91.26, r=24 90.23)"),
    Claim("compute_weight_flop_ratio",
          "Compute: LDFA replaces each weight layer's backward input-gradient matmul by two thin ones, so the "
          "weight-layer training FLOPs fall towards 2/3 of backprop's as the rank shrinks.",
          "weight-layer FLOPs per training step, LDFA / BP, at the lowest rank (ViT)",
          Criterion("at_most", 0.70), "flops", _flop_ratio_low_rank,
          published=2 / 3, published_source="the paper: the saving for weight layers is bounded by about 1/3",
          deterministic=True),
    Claim("compute_flops_to_90",
          "Compute: LDFA needs over 20 % fewer training FLOPs than backprop to reach 90 % of the final accuracy "
          "(ViT).",
          "1 - (FLOPs of LDFA at the highest rank) / (FLOPs of BP) to reach 90 % of BP's final accuracy, paired "
          "by seed",
          Criterion("at_least", 0.20), "vit_cifar", _flops_to_90,
          published=0.20, published_source="the paper: over 20 % of the total training compute saved for the ViT"),
    Claim("compute_flops_to_90_cnn",
          "Compute: on the CNN (cnn_small, CIFAR-10), adaptive LDFA at every layer's width / 4 reaches 90 % of "
          "backprop's final accuracy with fewer training FLOPs than backprop.",
          "1 - (FLOPs of LDFA at width / 4) / (FLOPs of BP) to reach 90 % of BP's final test accuracy, paired by "
          "seed",
          Criterion("at_least", 0.0), "compute_to_target", _saving_to_target("cnn_small"),
          published_source="the paper gives the saving for the ViT only (over 20 %); here only its sign is "
                           "claimed"),
    Claim("compute_flops_to_90_mnist",
          "Compute: on the MNIST MLP, adaptive LDFA at r = d = 10 reaches 90 % of backprop's final accuracy with "
          "fewer training FLOPs than backprop.",
          "1 - (FLOPs of LDFA at r = 10) / (FLOPs of BP) to reach 90 % of BP's final test accuracy, paired by "
          "seed",
          Criterion("at_least", 0.0), "compute_to_target", _saving_to_target("mlp_mnist"),
          published_source="the paper gives the saving for the ViT only (over 20 %); here only its sign is "
                           "claimed"),
    Claim("rf_low_rank_centre_surround",
          "Receptive fields: a low-rank error reaching the retina gives centre-surround units where full "
          "(backprop) error gives oriented ones.",
          "median centre-surround index of the retina's output units (retina.relu2), lowest-rank LDFA minus BP, "
          "per seed",
          Criterion("at_least", 0.1), "receptive_fields", _rf_csi_difference,
          published_source="the paper shows pictures only"),
    Claim("rf_bottleneck_centre_surround",
          "Receptive fields, positive control (Lindsey et al. 2019): backprop through a forward bottleneck of "
          "few retina-output channels gives centre-surround retina-output units where the wide network's are "
          "not.",
          "median centre-surround index of the retina's output units (retina.relu2), BP with the narrowest "
          "forward bottleneck tried minus BP on the wide network, per seed",
          Criterion("at_least", 0.1), "receptive_fields", _rf_bottleneck_csi_difference,
          published_source="Lindsey et al. (2019, ICLR) show pictures and a qualitative classification; no "
                           "index"),
    Claim("rate_matches_autograd_twin",
          "Rate network: the continuous-time rate network with a feedback population learns as well as its "
          "autograd twin (the same network, digits and online order).",
          "autograd twin minus rate network final test accuracy, percentage points",
          Criterion("at_most", 2.0, "pp"), "rate_network", _rate_twin_gap,
          published_source="not in the paper (bioplastic's own rate-network implementation)"),
    Claim("it_ldfa_like_bp",
          "Representations: networks trained with adaptive LDFA resemble IT as closely as backprop-trained ones.",
          "BP minus LDFA best-layer RDM similarity to human IT (Spearman), paired by seed",
          Criterion("at_most", 0.03), "rsa_it", _it_bp_minus_ldfa,
          published_source="not in the paper (Kriegeskorte et al. 2008 IT data; an extension)"),
)
"""Every claim, in report order."""


def claim_ids() -> tuple[str, ...]:
    """The ids of :data:`CLAIMS`, in order."""
    return tuple(c.id for c in CLAIMS)


_ids = claim_ids()
assert len(set(_ids)) == len(_ids), "claim ids must be unique"
