"""
Averaging networks in embedding space
=====================================

Plain weight averaging of independently trained networks gives a broken network (their
units are not aligned). :class:`skdynamo.DynamoAverager` averages the members'
*embeddings* instead; the meta-model at the centre is a new, operable network.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.frozen import FrozenEstimator

from skdynamo import DynamoAverager, DynamoEmbedder
from skdynamo.baselines import average_weights
from skdynamo.datasets import make_flipflop, make_rnn_population

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru",),
                          hidden_sizes=(16,), n_seeds=3, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=100,
                     random_state=0).fit(pop.models)
members = [m for m, t in zip(pop.models, pop.task) if t == "flipflop"]

avg = DynamoAverager(FrozenEstimator(emb)).fit(members)
naive = average_weights(members)

X, Y = make_flipflop(4, 50, random_state=1)
with torch.no_grad():
    y_naive = naive(torch.as_tensor(X)).numpy()
y_avg = avg.predict(X)


def r2(pred):
    return 1 - ((pred - Y) ** 2).sum() / ((Y - Y.mean((0, 1))) ** 2).sum()


print(f"R^2 on the task: DYNAMO average {r2(y_avg):.2f}, weight average {r2(y_naive):.2f}")
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(Y[0, :, 0], "k", lw=2, label="target")
ax.plot(y_avg[0, :, 0], label="DYNAMO average")
ax.plot(y_naive[0, :, 0], "--", label="weight average")
ax.set_xlabel("time step")
ax.legend()
fig.tight_layout()
