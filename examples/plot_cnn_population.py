"""
A population of CNNs: layers as time
====================================

DYNAMO treats a convolutional network's activations, layer after layer, as its
trajectory. Given image probes, :class:`skdynamo.DynamoEmbedder` records each conv
block's output and the penultimate features of every member (spatially averaged),
aligns members of different depths by relative depth, and trains a FiLM-conditioned
CNN meta-model (:class:`skdynamo.nn.ConditionedCNN`) whose per-channel scale and shift
depend on the model embedding.

Here: small CNNs on sklearn's 8x8 digits, trained to compute three different things
(the digit, its parity, a permutation of the digits) at two depths. We map them, then
average the digit classifiers into one new CNN and compare it with its members and with
plain weight averaging.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from skdynamo import DynamoAverager, DynamoEmbedder
from skdynamo.baselines import average_weights
from skdynamo.datasets import digits_variant_labels, load_digits_images, make_cnn_population
from skdynamo.plotting import plot_embedding

torch.set_num_threads(1)

# %%
# The population: 3 variants x 2 depths x 3 seeds = 18 CNNs (trained once, then cached).
pop = make_cnn_population(widths=(8,), depths=(2, 3), n_seeds=3)
print(pop.DESCR)
print("test accuracies:", np.round(pop.accuracy, 3))

# %%
# Embed them. Image probes select the convolutional meta-model and a KL loss on the
# logits; ``emulation_scores_.agreement`` is the share of held-out probe images on which
# the meta-model at a member's embedding picks the member's class.
X_train, X_test, _, d_test = load_digits_images()
emb = DynamoEmbedder(probe_inputs=X_train[:256], max_epochs=60, random_state=0)
Z = emb.fit_transform(pop.models)
print(type(emb.meta_model_).__name__, "agreement on held-out probes:",
      emb.emulation_scores_.agreement.mean().round(3))

fig, ax = plt.subplots(figsize=(5, 4))
plot_embedding(Z, color_by=pop.variant, marker_by=[f"depth {d}" for d in pop.depth], ax=ax)
ax.set_title("18 CNNs, coloured by what they compute")
fig.tight_layout()

# %%
# Averaging: the meta-model at the centroid of the digit classifiers is a plain CNN
# (:class:`skdynamo.StandaloneCNN`: the FiLM modulation is folded into its convolutions).
# Weight averaging needs members of one architecture, so it gets the depth-2 ones only.
digits = [m for m, v in zip(pop.models, pop.variant) if v == "digits"]
avg = DynamoAverager(FrozenEstimator(emb)).fit(digits)
y = digits_variant_labels(d_test, "digits")


def accuracy(model):
    with torch.no_grad():
        return float((model(torch.as_tensor(X_test)).argmax(1).numpy() == y).mean())


members = [accuracy(m) for m in digits]
same_arch = [m for m in digits if m.depth == 2]
acc_avg = float((avg.predict(X_test).argmax(1) == y).mean())
acc_weights = accuracy(average_weights(same_arch))
print(f"members {np.round(members, 3)}, DYNAMO centroid {acc_avg:.3f}, "
      f"weight average (depth-2 members) {acc_weights:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(range(len(members)), members, color="0.7", label="members")
ax.axhline(acc_avg, color="C0", lw=2, label=f"DYNAMO centroid ({acc_avg:.2f})")
ax.axhline(acc_weights, color="C3", ls="--", lw=2,
           label=f"weight average, depth-2 members ({acc_weights:.2f})")
ax.set_ylim(0, 1.05)
ax.set_xlabel("digit classifier")
ax.set_ylabel("test accuracy")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()
