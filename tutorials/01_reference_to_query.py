# %% [markdown]
# # dice tutorial: reference -> query denoising, uncertainty and label transfer
#
# Runs on a laptop CPU in a few minutes, offline: it uses the CBMC CITE-seq data that ships with dice.
# Run it as a script (`python tutorials/01_reference_to_query.py`) or open it as a notebook in
# Jupyter/VS Code (the `# %%` markers are cells).

# %%
import matplotlib

matplotlib.use("Agg")
import scanpy as sc

import dice
from dice._demo import stratified_split

# %% [markdown]
# ## 1. Raw counts -> the paper's preprocessing, then a reference / query split

# %%
adata = dice.pp.recipe_paper(dice.datasets.cbmc(), copy=True)  # QC, normalise 1e4, log1p, HVGs
ref_mask, query_mask = stratified_split(adata.obs["label"].to_numpy(), query_fraction=0.1, seed=0)
reference, query = adata[ref_mask].copy(), adata[query_mask].copy()

# %% [markdown]
# ## 2. Train the prior on the reference (loadings V + diffusion model), save it

# %%
model = dice.tl.train_prior(reference, n_comps=25, seed=0)
model.save("cbmc_prior", overwrite=True)
dice.pl.training_loss(model, save="tutorial_training_loss.png")

# %% [markdown]
# ## 3. Denoise the query; the result is an ordinary embedding for scanpy

# %%
dice.tl.denoise(query, model=model, seed=0, store_samples=True)
sc.pp.neighbors(query, use_rep="X_dice")
sc.tl.leiden(query, flavor="igraph", n_iterations=2, directed=False)
dice.pl.embedding_comparison(query, color="label", save="tutorial_pca_vs_dice.png")
dice.pl.uncertainty(query, save="tutorial_uncertainty.png")
print(query.uns["dice"]["sampler"])

# %% [markdown]
# ## 4. How sure is each cluster assignment? How sure is each transferred label?

# %%
dice.tl.cluster_confidence(query, cluster_key="leiden")
print(query.obs[["leiden", "dice_cluster_confidence", "dice_cluster_set"]].head())
dice.tl.transfer_labels(query, reference, label_key="label", model=model, seed=0)
accuracy = (query.obs["dice_label"].astype(str) == query.obs["label"].astype(str)).mean()
print(f"label transfer accuracy {accuracy:.3f}; mean confidence {query.obs['dice_label_confidence'].mean():.3f}")
