"""
Fixed points of a network and of the meta-model
===============================================

Every point of the embedding space is a recurrent network, so its fixed points can be
found like those of any trained RNN (:func:`skdynamo.dynamics.find_fixed_points`). A
flip-flop network holds its memories in stable fixed points. Here the meta-model is small
and briefly trained (seconds on a CPU), and at that network's embedding it has far fewer
fixed points than the network itself: matching outputs on the probes does not imply
matching attractors. The :doc:`../dynamics` page measures how the counts compare on a
larger, better-trained population.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from skdynamo import DynamoEmbedder
from skdynamo.datasets import make_rnn_population
from skdynamo.dynamics import find_fixed_points
from skdynamo.plotting import plot_fixed_points

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                          hidden_sizes=(16,), n_seeds=2, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=100,
                     random_state=0).fit(pop.models)
n = int(np.flatnonzero(pop.task == "flipflop")[0])

fp_base = find_fixed_points(pop.models[n], pop.probe_inputs, random_state=0)
fp_meta = find_fixed_points(emb.model_at(emb.embeddings_[n]), pop.probe_inputs,
                            random_state=0)
print(fp_base)
print(fp_meta)

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot_fixed_points(fp_base, ax=axes[0], title=f"member {n} ({pop.cell[n]})")
plot_fixed_points(fp_meta, ax=axes[1], title="meta-model at its embedding")
fig.tight_layout()
