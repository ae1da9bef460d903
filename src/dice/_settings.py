"""Settings objects: the many knobs of the sampler, the training and the label transfer, grouped and checked.

Each is a frozen dataclass validated on construction, so that a bad value fails where it is written, with a
message that says what was given and what is allowed, before any work starts. They import no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real

from ._validation import DiceInputError

__all__ = ["PosteriorSettings", "TrainSettings", "TransferSettings", "check_seed"]

SAMPLERS = ("direct", "gibbs")
PRIOR_STEPS = ("ancestral", "strided", "tweedie")
RHO_SCHEDULES = ("constant", "linear", "exponential")
MEAN_ESTIMATES = ("tweedie", "samples")
UNCERTAINTIES = ("jacobian", "samples", "none")
LIKELIHOODS = ("auto", "counts", "gene_weighted", "isotropic")
NOISE_VARS = ("dataset", "cell", "reference")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise DiceInputError(f"{name} must be a positive integer, got {value!r}.")


def _finite(name: str, value, *, low: float | None = None, low_open: bool = False, high: float | None = None):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise DiceInputError(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        raise DiceInputError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise DiceInputError(f"{name} must be <= {high}, got {value!r}.")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise DiceInputError(f"{name} must be one of {list(allowed)}, got {value!r}.")


def check_seed(seed) -> int:
    """Seeds are non-negative integers (numpy's and torch's generators both accept them)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise DiceInputError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


class _Settings:
    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values for ``uns[...]["params"]``; fields that are ``None`` are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class PosteriorSettings(_Settings):
    """How each cell's latent posterior is formed and sampled (:func:`dice.tl.denoise`).

    The default was chosen by measurement (BENCHMARKS.md, sections 2-3 and "Uncertainty without sampling"):
    the gene-weighted likelihood, the posterior mean as the network's one-call Tweedie estimate, the
    uncertainty from the second-order Tweedie formula (no draws), and, when draws are asked for, exact
    posterior draws from one reverse diffusion started at the cell's own noise level. :meth:`paper` is the
    authors' real-data protocol.

    Parameters
    ----------
    sampler
        ``"direct"`` (one reverse diffusion from the target posterior; exact for Gaussian measurement noise)
        or ``"gibbs"`` (the paper's split Gibbs sampler, ``n_iter`` iterations under the rho schedule).
    rho
        Coupling strength **in units of each cell's noise sd sigma**: the sampler targets the posterior under
        noise variance ``sigma^2 (1 + rho^2)``. 0 is the Bayesian posterior; larger values trust the prior more.
    rho_end, rho_schedule, n_iter
        Final rho (default: ``rho``), its schedule (``"constant"``, ``"linear"``, ``"exponential"``) and the
        number of Gibbs iterations (``sampler="gibbs"`` only).
    prior_step, n_prior_steps
        Reverse diffusion of the prior step: ``"ancestral"`` (every DDPM step), ``"strided"``
        (``n_prior_steps`` steps; under-disperses) or ``"tweedie"`` (one call, a mean, not a sample).
    n_samples
        Posterior draws per cell. They are drawn only when something uses them: stored samples
        (``store_samples=True``, label transfer), ``mean_estimate="samples"``, ``uncertainty="samples"`` or
        the Gibbs sampler.
    mean_estimate
        ``"tweedie"`` (the network's ``E[u | measurement]``, no Monte Carlo error; direct sampler) or
        ``"samples"`` (the average of the draws).
    uncertainty, n_probes
        How the per-cell spread (root mean over latent dimensions of the posterior variance) is computed:
        ``"jacobian"`` (second-order Tweedie: the posterior covariance is the noise variance times the
        Jacobian of the posterior mean, estimated from ``n_probes`` finite-difference Jacobian-vector
        products of the network, exact when ``n_probes >= k``; no draws, same target posterior as the
        draws; direct sampler, the Gibbs sampler uses its draws instead), ``"samples"`` (the across-draw
        variance of the ``n_samples`` draws; NaN with one draw) or ``"none"`` (NaN).
    likelihood
        The measurement model: ``"gene_weighted"`` (per-gene noise variances from the reference),
        ``"isotropic"`` (the paper's), ``"counts"`` (raw counts in ``layers["counts"]``, for shallow data:
        a negative-binomial likelihood whose noise grows per cell as depth falls; needs a model trained on a
        reference with ``layers["counts"]``) or ``"auto"`` (``"counts"`` when both the model and the data have
        counts, else ``"gene_weighted"``).
    noise_var
        How the noise level of a Gaussian likelihood is set: ``"dataset"`` (estimated on all the cells being
        denoised), ``"cell"`` (each cell's own residuals), ``"reference"`` (the reference's level) or, with
        ``likelihood="isotropic"``, a number (sigma^2 per standardised gene).
    min_shared
        Smallest fraction of the model's genes the data must have (0 < min_shared <= 1).
    """

    sampler: str = "direct"
    rho: float = 0.0
    rho_end: float | None = None
    rho_schedule: str = "constant"
    n_iter: int = 1
    prior_step: str = "ancestral"
    n_prior_steps: int = 20
    n_samples: int = 10
    mean_estimate: str = "tweedie"
    uncertainty: str = "jacobian"
    n_probes: int = 4
    likelihood: str = "auto"
    noise_var: str | float = "dataset"
    min_shared: float = 0.5

    def __post_init__(self) -> None:
        _choice("sampler", self.sampler, SAMPLERS)
        _finite("rho", self.rho, low=0.0)
        if self.rho_end is not None:
            _finite("rho_end", self.rho_end, low=0.0)
        _choice("rho_schedule", self.rho_schedule, RHO_SCHEDULES)
        if self.rho_schedule == "exponential" and (self.rho <= 0 or self.rho_end_value <= 0):
            raise DiceInputError("an exponential rho schedule needs rho > 0 and rho_end > 0.")
        _positive_int("n_iter", self.n_iter)
        _choice("prior_step", self.prior_step, PRIOR_STEPS)
        _positive_int("n_prior_steps", self.n_prior_steps)
        _positive_int("n_samples", self.n_samples)
        _choice("mean_estimate", self.mean_estimate, MEAN_ESTIMATES)
        _choice("uncertainty", self.uncertainty, UNCERTAINTIES)
        _positive_int("n_probes", self.n_probes)
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        if isinstance(self.noise_var, str):
            _choice("noise_var", self.noise_var, NOISE_VARS)
        else:
            _finite("noise_var", self.noise_var, low=0.0, low_open=True)
            if self.likelihood not in ("isotropic",):
                raise DiceInputError(
                    f"noise_var={self.noise_var!r} is a per-gene variance, which only the isotropic likelihood "
                    "uses; pass likelihood='isotropic' with it, or noise_var='dataset', 'cell' or 'reference'."
                )
        _finite("min_shared", self.min_shared, low=0.0, low_open=True, high=1.0)

    @property
    def rho_end_value(self) -> float:
        return float(self.rho if self.rho_end is None else self.rho_end)

    @property
    def uncertainty_method(self) -> str:
        """The uncertainty actually computed: ``"jacobian"`` needs the direct sampler (else the draws')."""
        if self.uncertainty == "jacobian" and self.sampler != "direct":
            return "samples"
        return self.uncertainty

    @classmethod
    def paper(cls) -> PosteriorSettings:
        """The authors' real-data protocol: split Gibbs, full ancestral prior steps, rho 5 -> 0.5 linear over
        100 iterations, sigma^2 = 1 in standardised units, the isotropic likelihood, one sample (slow)."""
        return cls(
            sampler="gibbs",
            rho=5.0,
            rho_end=0.5,
            rho_schedule="linear",
            n_iter=100,
            prior_step="ancestral",
            n_prior_steps=1,
            n_samples=1,
            mean_estimate="samples",
            uncertainty="samples",
            likelihood="isotropic",
            noise_var=1.0,
        )

    @classmethod
    def resolve(cls, settings: PosteriorSettings | str | None) -> PosteriorSettings:
        """``None`` or ``"default"``: the default; ``"paper"``: :meth:`paper`; an instance: itself."""
        if settings is None or settings == "default":
            return cls()
        if settings == "paper":
            return cls.paper()
        if isinstance(settings, cls):
            return settings
        raise DiceInputError(f"settings must be a dice.tl.PosteriorSettings, 'default' or 'paper', got {settings!r}.")


@dataclass(frozen=True)
class TrainSettings(_Settings):
    """How the diffusion prior is trained (:func:`dice.tl.train_prior`).

    Parameters
    ----------
    hidden_dim, n_blocks, norm
        Network width D, residual blocks M, normalisation (``"batch"``, ``"layer"`` or ``"none"``). The
        CPU-sized default (D = 64, M = 2) matched larger networks on our benchmarks; the paper used D = 512,
        M = 8 on a GPU.
    n_timesteps
        Diffusion steps T of the linear beta schedule (1e-4 to 2e-2).
    n_updates
        Gradient updates (not epochs, so the cost does not grow with the number of cells).
    batch_size, lr, weight_decay
        Mini-batch size, peak learning rate (warm-up, then cosine decay), AdamW weight decay.
    mixup_prob
        Probability of the paper's same-label mixup (needs ``labels_key``); default 0.9 with labels, else 0.
    max_value
        Cap after standardising genes with the reference statistics (the paper's 10); ``None`` for none.
    count_latents
        What the prior learns from when the reference has raw counts. ``"posterior_draw"`` (default): one
        draw per reference cell from its count posterior under the weak Gaussian prior, so that the
        training set has the spread of the latent states themselves, whatever the reference's depth.
        ``"measurement"``: the count measurement's centre, which carries the measurement noise too; on a
        shallow reference (worm neurons, 72 UMIs per cell) its variance was 2-3x the latents', the prior
        as wide, and a shallow query's posterior mean did not shrink (docs: Benchmarks, section 7).
    count_loadings_width
        When the reference has raw counts: refit the loading matrix V to them (the count likelihood's own
        fit, jointly with each cell's state, as in GLM-PCA), each entry held near PCA's by a Gaussian penalty
        of width ``count_loadings_width / sqrt(genes)``, then orthonormalised. PCA of log-normalised genes
        mixes depth noise into V, most on a shallow reference; the fit keeps what the counts support. Default
        1.5 (screened 0.5-3; an unpenalised fit overfits). ``None`` keeps PCA's V. Costs 300 full-batch Adam
        steps on at most 2^24 cells x genes (a seeded subsample beyond that): on one core, 22 s for
        7,475 x 500 and 113 s for 3,040 x 3,000 cells x genes. Without raw counts V stays PCA's. Measured
        in the benchmarks, section 7 ("Loadings fitted to the counts").
    ambient_fraction
        When the reference has raw counts: the share of every cell's counts the count likelihood models as
        ambient RNA, drawn from the reference's pooled profile (:class:`dice.likelihood.CountReference`);
        it applies to the reference's own measurement and to every query the model measures. Droplet data
        carry a few to ten percent of such "soup", and the model without it reads a T cell's soup counts of
        monocyte genes as evidence for a monocyte state. Default 0 (no ambient RNA); for droplet data, the
        contamination fraction SoupX or CellBender estimate. See the benchmarks, section 4 ("Ambient
        RNA"), for what 0.1 does.
    count_dispersion
        When the reference has raw counts: the count likelihood's negative-binomial overdispersion,
        ``Var(c) = lambda (1 + alpha lambda)``, estimated by moments on the reference around the rank-k
        decoder. ``"gene"``: one ``alpha`` per gene; ``"pooled"``: one value for every gene; ``"local"``: one per
        gene, measured around each reference cell's 10 nearest neighbours' pooled profile instead of the
        decoder. A gene's decoder-based estimate also counts what k latent dimensions miss of it as noise
        (median 20 on PBMC3k: the variance of a gene with 10 expected counts 200x Poisson's; 4.3 locally),
        which down-weights the markers of small populations; the pooled value is dominated by
        well-expressed genes (0.015-0.65 on our references).
        Default ``"local"``: against ``"gene"``, purer neighbourhoods on PBMC and shallow-query embeddings
        closer to the same cells' full-depth ones, with the same labels (benchmarks, section 4, "Dispersions
        around each cell's neighbours").
    """

    hidden_dim: int = 64
    n_blocks: int = 2
    norm: str = "batch"
    n_timesteps: int = 512
    n_updates: int = 4000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    mixup_prob: float | None = None
    max_value: float | None = 10.0
    count_latents: str = "posterior_draw"
    count_loadings_width: float | None = 1.5
    ambient_fraction: float = 0.0
    count_dispersion: str = "local"

    def __post_init__(self) -> None:
        _choice("count_latents", self.count_latents, ("posterior_draw", "measurement"))
        _choice("count_dispersion", self.count_dispersion, ("gene", "pooled", "local"))
        if self.count_loadings_width is not None:
            _finite("count_loadings_width", self.count_loadings_width, low=0.0, low_open=True)
        _finite("ambient_fraction", self.ambient_fraction, low=0.0)
        if self.ambient_fraction >= 1:
            raise DiceInputError(
                f"ambient_fraction is the share of each cell's counts that is ambient RNA, in [0, 1); got "
                f"{self.ambient_fraction}. Typical droplet data: 0.02-0.2."
            )
        for name in ("hidden_dim", "n_blocks", "n_updates", "batch_size"):
            _positive_int(name, getattr(self, name))
        _positive_int("n_timesteps", self.n_timesteps)
        if self.n_timesteps < 2:
            raise DiceInputError(f"n_timesteps must be at least 2, got {self.n_timesteps}.")
        _choice("norm", self.norm, ("batch", "layer", "none"))
        _finite("lr", self.lr, low=0.0, low_open=True)
        _finite("weight_decay", self.weight_decay, low=0.0)
        if self.mixup_prob is not None:
            _finite("mixup_prob", self.mixup_prob, low=0.0, high=1.0)
        if self.max_value is not None:
            _finite("max_value", self.max_value, low=0.0, low_open=True)


@dataclass(frozen=True)
class TransferSettings(_Settings):
    """How labels are transferred and calibrated (:func:`dice.tl.transfer_labels`).

    Parameters
    ----------
    classifier
        ``"logistic"`` (multinomial logistic regression on posterior means; default) or ``"knn"`` (every
        posterior draw votes with its ``n_neighbors`` nearest reference cells).
    n_neighbors
        Reference neighbours of the kNN classifier and of the novelty score.
    alpha
        Label sets hold the true label with probability ``1 - alpha``.
    set_method
        ``"conformal"`` (split-conformal sets calibrated on held-out reference cells: the true label is in
        the set of ``1 - alpha`` of the cells, on average over them), ``"class_conformal"`` (one threshold
        per label, from its own held-out cells and never above the pooled one: each label is in the set of
        ``1 - alpha`` of its own cells, rare labels included, and every set contains the pooled one; labels
        with fewer than ``1 / alpha - 1`` held-out cells use the pooled threshold) or ``"credible"`` (the
        most probable labels up to ``1 - alpha`` of the probability).
    novelty_alpha, novelty_margin
        Novelty score = distance of a cell's posterior mean to its reference neighbours over the
        ``1 - novelty_alpha`` quantile of held-out reference cells'; above ``novelty_margin`` probability moves
        to ``"unassigned"``. ``novelty_alpha=None`` switches novelty off.
    calibration_fraction, max_calibration_cells
        Size of the held-out calibration part of the reference.
    calibration_depth
        ``"query"`` (default): when the query and the reference both keep raw counts, the reference cells are
        binomially thinned to depths drawn from the query's own depths before they are denoised, so the
        classifier, the temperature, the novelty scale and the label-set threshold hold at the query's
        sequencing depth (a shallow query is neither classified nor calibrated on deep cells).
        ``"reference"``: the reference cells at their own depth.
        Without counts on both sides the calibration is at the reference's depth either way.
    count_evidence
        With counts on both sides and ``calibration_depth="query"``: stack the latent classifier with each
        label's multinomial count profile (``dice.tl._count_evidence``), both weights fitted on the
        depth-matched calibration cells (they replace the temperature). It keeps labels right where the
        latent posterior is loose, e.g. a shallow reference. ``False``: the latent classifier alone.
    count_profiles
        Sub-profiles per label of the count evidence: each label's reference cells are split by k-means of
        their embedding into up to this many groups (one per 10 cells at most), and the label's count
        likelihood is the mixture of the groups' profiles; 1 is one profile per label (plain naive Bayes).
        A label often spans states (activated and resting, neuron subtypes) that one averaged profile blurs.
    labels_mixup
        Train the prior (when none is given) with the paper's same-label mixup.
    """

    classifier: str = "logistic"
    n_neighbors: int = 15
    alpha: float = 0.1
    set_method: str = "conformal"
    novelty_alpha: float | None = 0.01
    novelty_margin: float = 1.25
    calibration_fraction: float = 0.15
    max_calibration_cells: int = 1500
    calibration_depth: str = "query"
    count_evidence: bool = True
    count_profiles: int = 2
    labels_mixup: bool = False

    def __post_init__(self) -> None:
        _choice("classifier", self.classifier, ("logistic", "knn"))
        _positive_int("n_neighbors", self.n_neighbors)
        _finite("alpha", self.alpha, low=0.0, low_open=True)
        if self.alpha >= 1:
            raise DiceInputError(f"alpha must lie strictly between 0 and 1, got {self.alpha}.")
        _choice("set_method", self.set_method, ("conformal", "class_conformal", "credible"))
        if self.novelty_alpha is not None:
            _finite("novelty_alpha", self.novelty_alpha, low=0.0, low_open=True)
            if self.novelty_alpha >= 1:
                raise DiceInputError(f"novelty_alpha must lie in (0, 1) or be None, got {self.novelty_alpha}.")
        _finite("novelty_margin", self.novelty_margin, low=0.0, low_open=True)
        _finite("calibration_fraction", self.calibration_fraction, low=0.0, low_open=True, high=0.9)
        _positive_int("max_calibration_cells", self.max_calibration_cells)
        _choice("calibration_depth", self.calibration_depth, ("query", "reference"))
        if not isinstance(self.count_evidence, bool):
            raise DiceInputError(f"count_evidence must be True or False, got {self.count_evidence!r}.")
        _positive_int("count_profiles", self.count_profiles)
