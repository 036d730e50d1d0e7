"""
Grid search with held-out networks
==================================

A list of models is sliced by :class:`~sklearn.model_selection.KFold` like any array, so
:class:`~sklearn.model_selection.GridSearchCV` can choose the embedder's parameters by how
well the frozen meta-model emulates networks it was not trained on
(:meth:`skdynamo.DynamoEmbedder.score`).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, KFold

from skdynamo import DynamoEmbedder
from skdynamo.datasets import make_rnn_population

torch.set_num_threads(1)

pop = make_rnn_population(tasks=("flipflop", "integration"), cells=("gru", "lstm"),
                          hidden_sizes=(16,), n_seeds=2, n_steps=300, n_probes=64,
                          min_score=0.0, max_retries=0, random_state=0)
grid = {"n_components": [1, 2], "hidden_size": [16], "hidden_weight": [0.5, 1.0]}
search = GridSearchCV(
    DynamoEmbedder(probe_inputs=pop.probe_inputs, max_epochs=40, transform_max_iter=20,
                   random_state=0),
    grid, cv=KFold(4, shuffle=True, random_state=0), error_score="raise")
search.fit(pop.models)
print("best:", search.best_params_)

res = search.cv_results_
labels = [f"d={p['n_components']} h={p['hidden_size']} a={p['hidden_weight']}"
          for p in res["params"]]
order = np.argsort(res["mean_test_score"])
fig, ax = plt.subplots(figsize=(6, 4))
ax.barh(np.array(labels)[order], res["mean_test_score"][order],
        xerr=res["std_test_score"][order])
ax.set_xlabel("held-out emulation score")
fig.tight_layout()
