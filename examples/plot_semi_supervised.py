"""
Learning a task from a few labels
=================================

:class:`skdynamo.DynamoSemiSupervised` searches the population's embedding space for the
network that fits a handful of labelled sequences; the population acts as a prior, so a
few labels are enough to pick a network that solves the task.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from skdynamo import DynamoEmbedder, DynamoSemiSupervised
from skdynamo.datasets import make_integration, make_rnn_population

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                          hidden_sizes=(16,), n_seeds=2, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=100,
                     random_state=0).fit(pop.models)

X, Y = make_integration(64, 50, random_state=1)
X_test, Y_test = make_integration(64, 50, random_state=2)
n_labels = [1, 2, 4, 8, 16]
scores = []
for n in n_labels:
    y = Y.copy()
    y[n:] = np.nan                       # NaN marks unlabelled sequences
    est = DynamoSemiSupervised(FrozenEstimator(emb), max_iter=100, random_state=0)
    scores.append(est.fit(X, y).score(X_test, Y_test))
    print(f"{n:2d} labelled sequences: test R^2 = {scores[-1]:.2f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(n_labels, scores, "o-")
ax.set_xscale("log", base=2)
ax.set_xlabel("labelled sequences")
ax.set_ylabel("test R^2")
fig.tight_layout()
