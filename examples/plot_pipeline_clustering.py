"""
Clustering networks in a Pipeline
=================================

``Pipeline([DynamoEmbedder, StandardScaler, KMeans]).fit_predict(models)`` groups networks
by the computation they perform; :class:`skdynamo.DynamoCluster` does the same and also
picks the number of clusters by silhouette score.
"""

import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skdynamo import DynamoEmbedder
from skdynamo.datasets import make_rnn_population
from skdynamo.plotting import plot_embedding

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                          hidden_sizes=(16,), n_seeds=2, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
pipe = Pipeline([
    ("embed", DynamoEmbedder(probe_inputs=pop.probe_inputs, hidden_size=16, max_epochs=100,
                             random_state=0)),
    ("scale", StandardScaler()),
    ("cluster", KMeans(2, n_init=10, random_state=0)),
])
labels = pipe.fit_predict(pop.models)
print("agreement with the tasks (ARI):", adjusted_rand_score(pop.task, labels))

plot_embedding(pipe.named_steps["embed"].embeddings_, color_by=labels, marker_by=pop.task,
               title="KMeans clusters (colour) vs tasks (marker)")
