"""Task generators and seeded model populations (model zoos)."""

from ._families import (make_classifier_population, make_family_population,
                        make_sequence_classification, train_sequence_classifier)
from ._cognitive import (COGNITIVE_TASKS, make_cognitive_population, make_cognitive_task,
                         response_period)
from ._cnn_zoo import (CNN_VARIANTS, ConvNetwork, digits_variant_labels, load_digits_images,
                       make_cnn_population, train_conv_network)
from ._flipflop_zoo import make_flipflop_population, make_flipflop_trials
from ._hidden_zoo import make_hidden_head_population
from ._tasks import (PULSE_TASKS, make_delay, make_flipflop, make_integration,
                     make_leaky_integration, make_pulses, make_random_probes,
                     make_running_max, make_sine_generation, make_task)
from ._transformer_zoo import (CausalTransformer, make_transformer_population,
                               train_causal_transformer)
from ._zoo import (RecurrentNetwork, get_data_home, make_rnn_population, permute_hidden_units,
                   train_recurrent_network)

__all__ = [
    "CNN_VARIANTS",
    "COGNITIVE_TASKS",
    "CausalTransformer",
    "ConvNetwork",
    "PULSE_TASKS",
    "RecurrentNetwork",
    "digits_variant_labels",
    "get_data_home",
    "load_digits_images",
    "make_classifier_population",
    "make_cnn_population",
    "make_cognitive_population",
    "make_cognitive_task",
    "make_delay",
    "make_family_population",
    "make_flipflop",
    "make_flipflop_population",
    "make_flipflop_trials",
    "make_hidden_head_population",
    "make_integration",
    "make_leaky_integration",
    "make_running_max",
    "make_pulses",
    "make_random_probes",
    "make_rnn_population",
    "make_sequence_classification",
    "make_sine_generation",
    "make_task",
    "make_transformer_population",
    "permute_hidden_units",
    "response_period",
    "train_causal_transformer",
    "train_conv_network",
    "train_recurrent_network",
    "train_sequence_classifier",
]
