# ruff: noqa: B018  (the last expression of a notebook cell is its displayed output)
# %% [markdown]
# # dice in a scanpy workflow
#
# This tutorial runs dice the way most people will meet it: inside an ordinary scanpy analysis of one
# dataset. We start from raw UMI counts of the 10x PBMC 3k dataset, preprocess them with the paper's
# recipe, let `dice.tl.denoise` learn a diffusion prior on the cells and replace each cell's PCA
# coordinates by its posterior mean, and then use that embedding for neighbours, Leiden clusters, UMAP
# and marker genes. Finally we compare the result with plain PCA and look at the cells dice is unsure about.
#
# The data come from `dice.datasets`, which reads checksummed local files and never downloads anything
# on its own. `pbmc3k` is not shipped inside the package: point the environment variable `DICE_DATA_DIR`
# to a folder that holds it (see the *Tutorials* page of the documentation).
#
# Training is kept deliberately short here (a few hundred gradient updates) so the notebook runs in a
# couple of minutes on a laptop CPU; the package default (`dice.tl.TrainSettings()`) trains longer.

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

import dice

# tqdm's notebook progress bars need ipywidgets; dice's progress bars are switched off below anyway
warnings.filterwarnings("ignore", message="IProgress not found")
sc.settings.verbosity = 0
sc.settings.set_figure_params(dpi=70, frameon=False, facecolor="white")
SEED = 0  # every random step below (training, sampling, Leiden, UMAP) is seeded with it
print("dice", dice.__version__)

# %% [markdown]
# ## Raw counts
#
# `pbmc3k` holds the raw UMI counts of 2,700 peripheral blood mononuclear cells, together with the cell
# types of the Seurat guided-clustering tutorial (`seurat_annotation`), which we use only to *read*
# the results, never to compute them.

# %%
adata = dice.datasets.load("pbmc3k")
adata

# %% [markdown]
# ## Preprocessing: `dice.pp.recipe_paper`
#
# The recipe of the DICE paper: cell and gene QC, Seurat-v3 highly variable genes on the counts,
# normalisation to 10,000 counts per cell and `log1p`. The raw counts of the kept genes stay in
# `layers["counts"]`; when that layer is present dice measures each cell with a count likelihood, whose
# noise level follows the cell's sequencing depth. Scaling is left to the model, which standardises every
# dataset with the statistics of the data it was trained on.

# %%
dice.pp.recipe_paper(adata, n_top_genes=1500)
adata

# %% [markdown]
# ## Denoising: `dice.tl.denoise`
#
# Called without a model, `denoise` trains one on `adata` itself: it fits the loadings (an exact PCA with
# `n_comps` components, then refitted to the raw counts in `layers["counts"]` under a penalty that keeps
# them near PCA's) and a small diffusion network on the cells' latent coordinates, then samples each
# cell's posterior under that prior. It writes
#
# * `obsm["X_dice"]`: the posterior mean of each cell, the denoised embedding;
# * `obsm["X_dice_pca"]`: the same cells' undenoised projection on the loadings, for comparison;
# * `obs["dice_uncertainty"]`: the spread of the posterior draws, in the same latent units;
# * `uns["dice"]`: every setting, the seed, the likelihood used and the timing.

# %%
dice.tl.denoise(
    adata,
    n_comps=20,
    training=dice.tl.TrainSettings(n_updates=600, batch_size=256),
    seed=SEED,
    progress=False,
)
info = adata.uns["dice"]
print(f"likelihood: {info['likelihood']}, latent dimensions: {info['n_comps']}, took {info['seconds']:.0f} s")
adata.obsm["X_dice"].shape

# %% [markdown]
# ## The usual scanpy steps, on the DICE embedding
#
# `X_dice` is an ordinary embedding, so everything downstream is plain scanpy with `use_rep="X_dice"`.

# %%
sc.pp.neighbors(adata, use_rep="X_dice", random_state=SEED)
sc.tl.leiden(adata, resolution=0.5, flavor="igraph", n_iterations=2, directed=False, random_state=SEED)
sc.tl.umap(adata, random_state=SEED)
sc.pl.umap(adata, color=["leiden", "seurat_annotation"], wspace=0.45)

# %% [markdown]
# ### Marker genes per cluster
#
# Marker genes are computed on the log-normalised expression as usual; dice changes the cells' embedding,
# not their expression values. The table lists the top genes of each Leiden cluster, and the cross
# tabulation shows which annotated cell types each cluster holds.

# %%
sc.tl.rank_genes_groups(adata, "leiden", method="t-test", n_genes=25)
markers = pd.DataFrame(adata.uns["rank_genes_groups"]["names"]).head(5)
markers

# %%
sc.pl.rank_genes_groups_dotplot(adata, n_genes=3, dendrogram=False)

# %%
pd.crosstab(adata.obs["leiden"], adata.obs["seurat_annotation"])

# %% [markdown]
# ## The undenoised projection and DICE side by side
#
# `dice.pl.embedding_comparison` draws a UMAP of the undenoised projection next to one of the DICE
# embedding. To put numbers on the difference, we also cluster the undenoised projection the same way and score
# both against the Seurat annotation (adjusted Rand index of the Leiden clusters and the silhouette of the
# annotated types; cells without an annotation are left out).

# %%
fig = dice.pl.embedding_comparison(adata, color="seurat_annotation", seed=SEED)

# %%
annotated = adata[adata.obs["seurat_annotation"].notna()].copy()
rows = {}
for rep in ("X_dice_pca", "X_dice"):
    scratch = annotated.copy()
    sc.pp.neighbors(scratch, use_rep=rep, random_state=SEED)
    sc.tl.leiden(scratch, resolution=0.5, flavor="igraph", n_iterations=2, directed=False, random_state=SEED)
    truth = scratch.obs["seurat_annotation"]
    rows["projection" if rep == "X_dice_pca" else "DICE"] = {
        "Leiden clusters": scratch.obs["leiden"].nunique(),
        "ARI": dice.metrics.ari(truth, scratch.obs["leiden"]),
        "silhouette": dice.metrics.silhouette(scratch.obsm[rep], truth),
    }
pd.DataFrame(rows).T.round(3)

# %% [markdown]
# Read the two pictures and the table together. On this dataset, and with the short training used here,
# the two embeddings are close: DICE's Leiden clusters agree a little better with the annotation, and the
# annotated types are a little better separated (silhouette). The clearest visual
# difference is that DICE draws the populations more compactly, pulling cells towards the populations the
# prior has learned.
#
# ## Where is dice unsure, and what are those cells?
#
# Each cell's posterior has a spread: how far apart the prior lets its plausible states lie, given how
# noisy its measurement is. `dice.pl.uncertainty` maps it on the DICE embedding next to its distribution.

# %%
fig = dice.pl.uncertainty(adata, seed=SEED)

# %% [markdown]
# Two things drive the spread: the measurement's noise (shallow cells carry less information) and the
# prior (cells between two populations have plausible states on both sides). The table shows the spread
# per annotated type, with the median UMI count of the cells kept by the recipe, and the share of each type
# among the 5 % most uncertain cells compared with its share overall.

# %%
obs = adata.obs.assign(depth=np.asarray(adata.layers["counts"].sum(axis=1)).ravel())
obs["seurat_annotation"] = obs["seurat_annotation"].cat.add_categories("(no annotation)").fillna("(no annotation)")
top = obs["dice_uncertainty"] >= obs["dice_uncertainty"].quantile(0.95)
summary = obs.groupby("seurat_annotation", observed=True).agg(
    cells=("dice_uncertainty", "size"),
    median_uncertainty=("dice_uncertainty", "median"),
    median_umis=("depth", "median"),
)
summary["share_overall_%"] = 100 * summary["cells"] / summary["cells"].sum()
summary["share_top5%_%"] = 100 * obs[top]["seurat_annotation"].value_counts().reindex(summary.index) / top.sum()
summary.sort_values("median_uncertainty", ascending=False).round(2)

# %% [markdown]
# Here the spread mostly follows depth: the lymphocytes (naive CD4 T cells above all), which have the
# fewest UMIs in the selected genes, fill the top 5 %, together with the cells the Seurat tutorial removed
# in its QC, while the deeply sequenced monocytes and dendritic cells have the narrowest posteriors. The
# scatter below shows the relation directly.

# %%
fig, ax = plt.subplots(figsize=(4.5, 3.5))
ax.scatter(obs["depth"], obs["dice_uncertainty"], s=4, c="0.3", linewidths=0)
ax.set_xscale("log")
ax.set_xlabel("UMIs in the selected genes")
ax.set_ylabel("posterior spread")
rho = np.corrcoef(np.log(obs["depth"]), obs["dice_uncertainty"])[0, 1]
ax.set_title(f"spread against depth (r = {rho:.2f}, log depth)")
plt.show()

# %% [markdown]
# ## Summary
#
# * `dice.pp.recipe_paper` then `dice.tl.denoise(adata)` turn raw counts into a denoised embedding,
#   `obsm["X_dice"]`, that scanpy uses like any other (`use_rep="X_dice"`).
# * `obsm["X_dice_pca"]` keeps the undenoised projection for side-by-side comparisons.
# * `obs["dice_uncertainty"]` says, per cell, how far the posterior spreads; read it together with the
#   cells' depth and their position between populations before trusting a cluster boundary.
#
# The next tutorial trains the prior on one dataset and uses it to label cells of another.
