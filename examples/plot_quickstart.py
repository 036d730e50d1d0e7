"""
Quickstart: a map of trained networks
=====================================

Train a small population of recurrent networks on two tasks, embed it with
:class:`skdynamo.DynamoEmbedder`, and plot one point per network. Networks solving the
same task land together, whatever their cell type.
"""

import torch

from skdynamo import DynamoEmbedder
from skdynamo.datasets import make_rnn_population
from skdynamo.plotting import plot_embedding

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                          hidden_sizes=(16,), n_seeds=2, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, n_components=2, hidden_size=16,
                     max_epochs=100, random_state=0)
Z = emb.fit_transform(pop.models)
print("output R^2 on held-out probes:", emb.emulation_scores_.output_r2.round(2))

plot_embedding(Z, color_by=pop.task, marker_by=pop.cell)
