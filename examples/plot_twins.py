"""
Reparameterisation twins land on their originals
================================================

Permuting a network's hidden units changes every weight but not what it computes.
DYNAMO places such a *twin* next to its original (each member's linear map absorbs the
permutation; originals and twins are embedded by ``transform`` with the meta-model frozen),
while an embedding of the flattened weights puts it far away.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from skdynamo import DynamoEmbedder
from skdynamo.baselines import WeightSpaceEmbedding
from skdynamo.datasets import make_rnn_population, permute_hidden_units

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru",),
                          hidden_sizes=(16,), n_seeds=3, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
twins = [permute_hidden_units(m, random_state=i) for i, m in enumerate(pop.models)]

emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=100,
                     random_state=0).fit(pop.models)
# Originals and twins go through the same procedure (``transform``, meta-model frozen), so
# any distance between them is due to the reparameterisation alone.
Z, Z_twins = emb.transform(pop.models), emb.transform(twins)

weights = WeightSpaceEmbedding(n_components=2).fit(pop.models)
W, W_twins = weights.transform(pop.models), weights.transform(twins)

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, (a, b), title in zip(axes, [(Z, Z_twins), (W, W_twins)],
                             ["DYNAMO embedding", "weight-space PCA"]):
    for i, task in enumerate(np.unique(pop.task)):
        sel = pop.task == task
        ax.scatter(*a[sel].T, color=f"C{i}", label=f"{task}: original")
        ax.scatter(*b[sel].T, color=f"C{i}", marker="x", label=f"{task}: permuted twin")
    for p, q in zip(a, b):
        ax.plot(*np.stack([p, q]).T, color="grey", lw=0.8)
    ax.set_title(title)
axes[0].legend(fontsize=7)
fig.tight_layout()

spread = np.linalg.norm(Z - Z.mean(0), axis=1).mean()
print("DYNAMO: mean twin distance / spread =",
      round(float(np.linalg.norm(Z - Z_twins, axis=1).mean() / spread), 3))
