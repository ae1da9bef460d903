"""The paper's synthetic data: low-rank Gaussian-mixture latents observed through noisy linear loadings.

Every cell is ``x = V u + e`` with ``V`` (genes × k) iid ``N(0, 1)`` and shared by reference and query,
``u`` drawn from a mixture prior and ``e`` per-gene noise. Section 4 of the paper defines Setups 1–4
(two clusters, k = 15, d = 2000); appendix E.2 the five-cluster experiments (k = 15, d = 200).
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["SYNTHETIC_SETUPS", "synthetic"]

#: Setup names accepted by :func:`synthetic`: the paper's Setups 1–4 (section 4) and the two appendix E.2 experiments.
SYNTHETIC_SETUPS: tuple[str, ...] = ("1", "2", "3", "4", "e2_single", "e2_novel")

_T_DF = 4.0  # degrees of freedom of every multivariate t in the paper (noise of Setup 3, latents of Setup 4)
_GAUSSIAN_DF = np.inf  # a t with infinite degrees of freedom is the Gaussian: one field describes both


@dataclass(frozen=True)
class _MixturePrior:
    """A mixture of Gaussian or multivariate-t components; ``covariances`` hold the t *scale* matrices."""

    labels: tuple[str, ...]
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, k)
    covariances: np.ndarray  # (K, k, k)
    dfs: np.ndarray  # (K,), np.inf for Gaussian components


def _isotropic(means: np.ndarray, variances: list[float]) -> np.ndarray:
    k = means.shape[1]
    return np.stack([v * np.eye(k) for v in variances])


def _two_cluster_prior(n_latent: int, *, latent_shift: bool) -> _MixturePrior:
    """Section 4 prior: component 0 is "Cluster 1" (centred at 1_k), component 1 "Cluster 2" (at 0_k)."""
    means = np.stack([np.ones(n_latent), np.zeros(n_latent)])
    if latent_shift:  # Setup 4 query: N(1_k, 1.5 I) and t_4(scale 1.3 I) centred at 0
        return _MixturePrior(
            ("cluster_1", "cluster_2"),
            np.full(2, 0.5),
            means,
            _isotropic(means, [1.5, 1.3]),
            np.array([_GAUSSIAN_DF, _T_DF]),
        )
    return _MixturePrior(
        ("cluster_1", "cluster_2"),
        np.full(2, 0.5),
        means,
        _isotropic(means, [1.3, 1.5]),
        np.full(2, _GAUSSIAN_DF),
    )


def _sample_mixture(rng: np.random.Generator, n: int, prior: _MixturePrior) -> tuple[np.ndarray, np.ndarray]:
    """Component index and latent for each of ``n`` cells (labels iid from the weights, as the model says)."""
    component = rng.choice(len(prior.weights), size=n, p=prior.weights)
    k = prior.means.shape[1]
    standard = rng.standard_normal((n, k))
    latents = np.empty((n, k))
    for j in range(len(prior.weights)):
        rows = component == j
        draws = standard[rows] @ np.linalg.cholesky(prior.covariances[j]).T
        if np.isfinite(prior.dfs[j]):  # multivariate t: one chi-square per cell scales its whole latent
            draws *= np.sqrt(prior.dfs[j] / rng.chisquare(prior.dfs[j], size=rows.sum()))[:, None]
        latents[rows] = prior.means[j] + draws
    return component, latents


def _sample_noise(rng: np.random.Generator, n: int, n_genes: int, *, variance: float, df: float) -> np.ndarray:
    """Gaussian noise ``N(0, variance I)``, or multivariate t with scale ``variance I`` when ``df`` is finite.

    The multivariate t is a Gaussian scale mixture: one chi-square draw per cell scales that cell's whole
    noise vector (so the genes of one cell are dependent, unlike iid univariate t noise).
    """
    noise = rng.standard_normal((n, n_genes)) * np.sqrt(variance)
    if np.isfinite(df):
        noise *= np.sqrt(df / rng.chisquare(df, size=n))[:, None]
    return noise


def _make_adata(
    *,
    setup: str,
    role: str,
    rng: np.random.Generator,
    n_cells: int,
    loadings: np.ndarray,
    prior: _MixturePrior,
    noise_var: float,
    noise_df: float,
    novel_labels: tuple[str, ...] = (),
) -> ad.AnnData:
    component, latents = _sample_mixture(rng, n_cells, prior)
    n_genes = loadings.shape[0]
    noise = _sample_noise(rng, n_cells, n_genes, variance=noise_var, df=noise_df)
    X = (latents @ loadings.T + noise).astype(np.float32)

    labels = np.asarray(prior.labels)[component]
    obs = pd.DataFrame(
        {"label": pd.Categorical(labels, categories=sorted(set(prior.labels)))},
        index=[f"{role}_{i}" for i in range(n_cells)],
    )
    if setup.startswith("e2"):
        obs["novel"] = np.isin(labels, novel_labels)
    var = pd.DataFrame(index=[f"gene_{g}" for g in range(n_genes)])
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm["X_true_latent"] = latents
    exact = bool(np.all(np.isinf(prior.dfs)) and np.isinf(noise_df))
    adata.uns["synthetic"] = {
        "setup": setup,
        "role": role,
        "loadings": loadings,
        "component_labels": np.asarray(prior.labels, dtype=object),
        "weights": prior.weights,
        "means": prior.means,
        "covariances": prior.covariances,
        "component_df": prior.dfs,
        "noise_family": "gaussian" if np.isinf(noise_df) else "student_t",
        "noise_var": float(noise_var),
        "noise_df": float(noise_df),
        # Per-gene variance of the noise actually drawn: equals noise_var for Gaussian noise,
        # noise_var * df / (df - 2) for the multivariate t.
        "noise_marginal_var": float(noise_var * noise_df / (noise_df - 2) if np.isfinite(noise_df) else noise_var),
        "exact_posterior_available": exact,
    }
    return adata


def _novel_centre(
    rng: np.random.Generator, training_centres: np.ndarray, min_distance: float, max_tries: int = 10_000
) -> np.ndarray:
    for _ in range(max_tries):
        candidate = rng.standard_normal(training_centres.shape[1])
        if np.min(np.linalg.norm(training_centres - candidate, axis=1)) >= min_distance:
            return candidate
    raise RuntimeError(f"no novel centre at distance >= {min_distance} found in {max_tries} draws")


def synthetic(
    setup: int | str,
    *,
    n_reference: int | None = None,
    n_query: int | None = None,
    n_genes: int | None = None,
    n_latent: int = 15,
    reference_noise_var: float | None = None,
    query_noise_var: float | None = None,
    query_cluster: int = 1,
    novel_fraction: float = 0.5,
    novel_min_distance: float = 3.0,
    seed: int = 0,
) -> tuple[ad.AnnData, ad.AnnData]:
    """Simulate a reference and a query dataset from the paper's synthetic designs.

    Parameters
    ----------
    setup
        ``1``–``4``: the two-cluster Setups of paper section 4 (defaults: 1600 reference and 400 query cells,
        2000 genes). ``"e2_single"`` / ``"e2_novel"``: the five-cluster experiments of appendix E.2
        (defaults: 8000 reference and 2000 query cells, 200 genes).
    n_reference, n_query, n_genes
        Sizes; ``None`` takes the paper's value for the setup.
    n_latent
        Latent dimension ``k`` (15 in the paper).
    reference_noise_var, query_noise_var
        Noise variance (the scale for t noise); ``None`` takes the paper's value: reference 1, query 1 / 10 /
        1 (t scale) / 10 for Setups 1–4; reference 0.5 and query 1.0 for E.2.
    query_cluster
        ``"e2_single"`` only: the training cluster (1–5) that every query cell comes from.
    novel_fraction
        ``"e2_novel"`` only: the expected fraction of query cells from the novel sixth cluster; the remaining
        cells come from the five training clusters in equal proportion. ``1.0`` gives the paper's figure
        (all query cells novel).
    novel_min_distance
        ``"e2_novel"`` only: the novel centre is redrawn from ``N(0, I)`` until it lies at least this far
        from every training centre (the paper "ensures" the new cluster lies outside the training support
        without saying how). At 3.0 the clusters (per-axis sd 0.55) do not overlap; the typical distance
        between ``N(0, I_15)`` centres is about 5.5, so the constraint rarely bites.
    seed
        Seed of everything. Separate random streams for the loadings, the cluster centres, the novel centre,
        the reference cells and the query cells, so that ``V`` and the prior never depend on the sizes.

    Returns
    -------
    ``(reference, query)``: AnnData objects with ``X`` (float32, cells × genes, not standardised),
    ``var_names`` ``gene_0``…, ``obs["label"]`` (categorical), ``obsm["X_true_latent"]`` (the true ``u``),
    for E.2 ``obs["novel"]`` (bool), and ``uns["synthetic"]``: ``loadings`` (true ``V``, genes × k), the
    true prior of *this* dataset's latents (``component_labels``, ``weights``, ``means``, ``covariances``,
    ``component_df``: ``inf`` for Gaussian components, 4 for a t component whose ``covariances`` entry is
    its scale matrix), ``noise_family`` (``"gaussian"``/``"student_t"``), ``noise_var`` (Gaussian variance or
    t scale), ``noise_df``, ``noise_marginal_var`` (per-gene variance actually drawn) and
    ``exact_posterior_available`` (Gaussian prior components and Gaussian noise).

    Notes
    -----
    Decisions where the paper is silent or ambiguous:

    - Labels are drawn iid from the mixture weights (the generative model), not in exactly equal counts.
    - "Cluster 1" is the component centred at ``1_k`` (``1.3 I``; ``1.5 I`` in the Setup 4 query, as the
      paper writes), "Cluster 2" the one centred at ``0_k`` (``1.5 I``; t with scale ``1.3 I`` in Setup 4).
    - Setup 3: multivariate t noise, one chi-square draw per cell (per-gene variance 2, not 1).
    - Setup 4: the t component is centred at ``0_k``; query noise variance 10.
    - For one seed the reference is identical across Setups 1–4 (one trained prior serves all four, as in
      the paper), and the queries of Setups 1–3 share their latents and their standard-normal noise draw
      (paired comparisons); likewise both E.2 variants share the reference.
    - E.2 novel cluster is labelled ``"cluster_6"``; ``obs["novel"]`` marks its cells.
    """
    setup = str(setup)
    if setup not in SYNTHETIC_SETUPS:
        raise ValueError(f"unknown setup {setup!r}; choose one of {SYNTHETIC_SETUPS}")
    loadings_seed, centres_seed, novel_seed, reference_seed, query_seed = np.random.SeedSequence(seed).spawn(5)
    is_e2 = setup.startswith("e2")
    n_reference = n_reference if n_reference is not None else (8000 if is_e2 else 1600)
    n_query = n_query if n_query is not None else (2000 if is_e2 else 400)
    n_genes = n_genes if n_genes is not None else (200 if is_e2 else 2000)
    loadings = np.random.default_rng(loadings_seed).standard_normal((n_genes, n_latent))

    if not is_e2:
        reference_prior = _two_cluster_prior(n_latent, latent_shift=False)
        query_prior = _two_cluster_prior(n_latent, latent_shift=setup == "4")
        default_query_var = {"1": 1.0, "2": 10.0, "3": 1.0, "4": 10.0}[setup]
        reference_noise = (1.0 if reference_noise_var is None else reference_noise_var, _GAUSSIAN_DF)
        query_noise = (
            default_query_var if query_noise_var is None else query_noise_var,
            _T_DF if setup == "3" else _GAUSSIAN_DF,
        )
        novel_labels: tuple[str, ...] = ()
    else:
        centres = np.random.default_rng(centres_seed).standard_normal((5, n_latent))
        labels = tuple(f"cluster_{i + 1}" for i in range(5))
        reference_prior = _MixturePrior(
            labels, np.full(5, 0.2), centres, _isotropic(centres, [0.3] * 5), np.full(5, _GAUSSIAN_DF)
        )
        reference_noise = (0.5 if reference_noise_var is None else reference_noise_var, _GAUSSIAN_DF)
        query_noise = (1.0 if query_noise_var is None else query_noise_var, _GAUSSIAN_DF)
        if setup == "e2_single":
            if not 1 <= query_cluster <= 5:
                raise ValueError(f"query_cluster must be in 1..5, got {query_cluster}")
            j = query_cluster - 1
            query_prior = _MixturePrior(
                (labels[j],),
                np.ones(1),
                centres[j : j + 1],
                reference_prior.covariances[j : j + 1],
                np.full(1, _GAUSSIAN_DF),
            )
            novel_labels = ()
        else:
            if not 0.0 <= novel_fraction <= 1.0:
                raise ValueError(f"novel_fraction must be in [0, 1], got {novel_fraction}")
            novel = _novel_centre(np.random.default_rng(novel_seed), centres, novel_min_distance)
            all_centres = np.vstack([centres, novel])
            query_prior = _MixturePrior(
                (*labels, "cluster_6"),
                np.append(np.full(5, (1.0 - novel_fraction) / 5), novel_fraction),
                all_centres,
                _isotropic(all_centres, [0.3] * 6),
                np.full(6, _GAUSSIAN_DF),
            )
            novel_labels = ("cluster_6",)

    reference = _make_adata(
        setup=setup,
        role="reference",
        rng=np.random.default_rng(reference_seed),
        n_cells=n_reference,
        loadings=loadings,
        prior=reference_prior,
        noise_var=reference_noise[0],
        noise_df=reference_noise[1],
    )
    query = _make_adata(
        setup=setup,
        role="query",
        rng=np.random.default_rng(query_seed),
        n_cells=n_query,
        loadings=loadings,
        prior=query_prior,
        noise_var=query_noise[0],
        noise_df=query_noise[1],
        novel_labels=novel_labels,
    )
    return reference, query
