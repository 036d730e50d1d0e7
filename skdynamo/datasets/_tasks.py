"""Task generators for recurrent networks.

Every pulse task shares one interface so that one population can mix them and one set
of probe inputs drives every member: ``n_channels`` input channels carrying sparse +-1
pulses plus Gaussian noise, and ``n_channels`` output channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.utils import check_random_state

from .._docstrings import share_parameters

RandomState = int | np.random.RandomState | None

__all__ = [
    "make_pulses",
    "make_flipflop",
    "make_integration",
    "make_leaky_integration",
    "make_delay",
    "make_running_max",
    "make_sine_generation",
    "make_task",
    "make_random_probes",
    "PULSE_TASKS",
]


def _check_sizes(n_samples, n_timesteps, n_channels):
    for name, value in (("n_samples", n_samples), ("n_timesteps", n_timesteps),
                        ("n_channels", n_channels)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def make_pulses(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3, *,
                pulse_prob: float = 0.08, noise: float = 0.05,
                random_state: RandomState = None) -> tuple[np.ndarray, np.ndarray]:
    """Sparse +-1 pulses with additive Gaussian noise: the shared input of the pulse tasks.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input channels.
    pulse_prob : float, default=0.08
        Probability that a channel carries a pulse at a given time step.
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to the inputs.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    pulses : ndarray of shape (n_samples, n_timesteps, n_channels)
        The clean pulses (values in {-1, 0, 1}), float32.

    Raises
    ------
    ValueError
        If a size is not a positive integer or ``pulse_prob`` is outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo.datasets import make_pulses
    >>> inputs, pulses = make_pulses(8, 20, random_state=0)
    >>> inputs.shape, np.unique(np.abs(pulses)).tolist()
    ((8, 20, 3), [0.0, 1.0])
    """
    _check_sizes(n_samples, n_timesteps, n_channels)
    if not 0.0 <= pulse_prob <= 1.0:
        raise ValueError(f"pulse_prob must be in [0, 1], got {pulse_prob!r}.")
    rng = check_random_state(random_state)
    on = rng.random_sample((n_samples, n_timesteps, n_channels)) < pulse_prob
    signs = rng.choice(np.array([-1.0, 1.0]), size=on.shape)
    pulses = (on * signs).astype(np.float32)
    inputs = pulses + noise * rng.standard_normal(pulses.shape).astype(np.float32)
    return inputs.astype(np.float32), pulses


def _flipflop_targets(pulses, n_bits):
    """Each of the first ``n_bits`` outputs holds the sign of the last pulse on its channel
    (0 before the first one); the other outputs are 0."""
    targets = np.zeros_like(pulses)
    state = np.zeros(pulses[:, 0].shape, dtype=np.float32)
    for t in range(pulses.shape[1]):
        state = np.where(pulses[:, t] != 0, pulses[:, t], state)
        targets[:, t] = state
    targets[:, :, n_bits:] = 0.0
    return targets


def make_flipflop(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3, *,
                  n_bits: int | None = None, pulse_prob: float = 0.08, noise: float = 0.05,
                  random_state: RandomState = None) -> tuple[np.ndarray, np.ndarray]:
    """The n-bit flip-flop: each tracked output holds the sign of its channel's last pulse.

    Outputs start at 0 and switch to +-1 at the first pulse. With ``n_bits < n_channels``
    only the first ``n_bits`` channels are tracked and the other outputs stay at zero, so
    1-, 2- and 3-bit flip-flops share one interface.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    n_bits : int, default=None
        Channels tracked (the first ``n_bits``); None tracks all ``n_channels``.
    pulse_prob : float, default=0.08
        Probability that a channel carries a pulse at a given time step.
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to the inputs.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The flip-flop states (values in {-1, 0, 1}), float32.

    Raises
    ------
    ValueError
        If ``n_bits`` is outside [0, n_channels].

    Examples
    --------
    >>> from skdynamo.datasets import make_flipflop
    >>> inputs, targets = make_flipflop(8, 20, n_bits=2, random_state=0)
    >>> targets.shape, bool((targets[:, :, 2] == 0).all())
    ((8, 20, 3), True)
    """

    n_bits = n_channels if n_bits is None else n_bits
    if not 0 <= n_bits <= n_channels:
        raise ValueError(f"n_bits must be in [0, n_channels={n_channels}], got {n_bits!r}.")
    inputs, pulses = make_pulses(n_samples, n_timesteps, n_channels, pulse_prob=pulse_prob,
                                 noise=noise, random_state=random_state)
    return inputs, _flipflop_targets(pulses, n_bits)


def make_leaky_integration(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3,
                           *, leak: float = 0.1, scale: float = 0.5, pulse_prob: float = 0.08,
                           noise: float = 0.05, random_state: RandomState = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Leaky running sum of the pulses: ``y_t = (1 - leak) * y_{t-1} + scale * pulse_t``.

    ``leak=0`` is perfect integration; the leak rate is the continuous parameter of a
    task family.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    leak : float, default=0.1
        Fraction of the sum lost at every step, in [0, 1].
    scale : float, default=0.5
        Weight of each pulse in the sum.
    pulse_prob : float, default=0.08
        Probability that a channel carries a pulse at a given time step.
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to the inputs.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The leaky sums, float32.

    Raises
    ------
    ValueError
        If ``leak`` is outside [0, 1].
    """

    if not 0.0 <= leak <= 1.0:
        raise ValueError(f"leak must be in [0, 1], got {leak!r}.")
    inputs, pulses = make_pulses(n_samples, n_timesteps, n_channels, pulse_prob=pulse_prob,
                                 noise=noise, random_state=random_state)
    targets = np.zeros_like(pulses)
    state = np.zeros((n_samples, n_channels), dtype=np.float32)
    for t in range(n_timesteps):
        state = (1.0 - leak) * state + scale * pulses[:, t]
        targets[:, t] = state
    return inputs, targets


def make_integration(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3, *,
                     scale: float = 0.5, pulse_prob: float = 0.08, noise: float = 0.05,
                     random_state: RandomState = None) -> tuple[np.ndarray, np.ndarray]:
    """Running sum of the pulses on each channel, times ``scale`` (perfect integration).

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    scale : float, default=0.5
        Weight of each pulse in the sum.
    pulse_prob : float, default=0.08
        Probability that a channel carries a pulse at a given time step.
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to the inputs.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The running sums, float32.
    """

    return make_leaky_integration(n_samples, n_timesteps, n_channels, leak=0.0, scale=scale,
                                  pulse_prob=pulse_prob, noise=noise, random_state=random_state)


def make_delay(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3, *,
               delay: int = 4, pulse_prob: float = 0.08, noise: float = 0.05,
               random_state: RandomState = None) -> tuple[np.ndarray, np.ndarray]:
    """Delay line: each output echoes its channel's pulses ``delay`` steps later.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    delay : int, default=4
        Steps between a pulse and its echo, in [0, n_timesteps).
    pulse_prob : float, default=0.08
        Probability that a channel carries a pulse at a given time step.
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to the inputs.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The delayed clean pulses, float32.

    Raises
    ------
    ValueError
        If ``delay`` is not an integer in [0, n_timesteps).
    """

    if not isinstance(delay, (int, np.integer)) or not 0 <= delay < n_timesteps:
        raise ValueError(f"delay must be an integer in [0, n_timesteps), got {delay!r}.")
    inputs, pulses = make_pulses(n_samples, n_timesteps, n_channels, pulse_prob=pulse_prob,
                                 noise=noise, random_state=random_state)
    targets = np.zeros_like(pulses)
    targets[:, delay:] = pulses[:, : n_timesteps - delay]
    return inputs, targets


def make_running_max(n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3, *,
                     scale: float = 0.5, pulse_prob: float = 0.08, noise: float = 0.05,
                     random_state: RandomState = None) -> tuple[np.ndarray, np.ndarray]:
    """Running maximum of the running sum: the highest level each channel's sum has reached.

    ``s_t = s_{t-1} + scale * pulse_t`` and ``y_t = max(0, s_1, ..., s_t)``: a network
    must integrate the pulses and also remember the peak, which a negative pulse does not
    lower. It reads the same inputs as the other pulse tasks.

    Parameters
    ----------
    {n_samples}
    {n_timesteps}
    {n_channels}
    {scale}
    {pulse_prob}
    {noise}
    {random_state}

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The running maxima, float32 (never below 0).

    Examples
    --------
    >>> from skdynamo.datasets import make_running_max
    >>> inputs, targets = make_running_max(4, 30, random_state=0)
    >>> bool((targets[:, 1:] >= targets[:, :-1]).all()), bool((targets >= 0).all())
    (True, True)
    """
    inputs, sums = make_integration(n_samples, n_timesteps, n_channels, scale=scale,
                                    pulse_prob=pulse_prob, noise=noise,
                                    random_state=random_state)
    return inputs, np.maximum.accumulate(np.maximum(sums, 0.0), axis=1)


def make_sine_generation(n_samples: int = 256, n_timesteps: int = 50, *,
                         frequencies: tuple[float, float] | Sequence[float] = (0.02, 0.08),
                         dt: float = 1.0, random_state: RandomState = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Sine-wave generation with the frequency given as a static input.

    The input is a single channel holding the frequency ``f`` (cycles per time step) for
    the whole sequence; the target is ``sin(2 pi f t dt)``.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    frequencies : tuple of two floats or array-like, default=(0.02, 0.08)
        A ``(low, high)`` pair draws each sequence's frequency uniformly in that range; any
        other array-like is a list of frequencies to sample from.
    dt : float, default=1.0
        Time per step.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, 1)
        The frequency of each sequence, repeated at every step, float32.
    targets : ndarray of shape (n_samples, n_timesteps, 1)
        The sine wave, float32.

    Raises
    ------
    ValueError
        If a size is not a positive integer or a frequency is negative or not finite.
    """
    _check_sizes(n_samples, n_timesteps, 1)
    rng = check_random_state(random_state)
    freqs = np.asarray(frequencies, dtype=float).ravel()
    if freqs.size == 0 or not np.all(np.isfinite(freqs)) or np.any(freqs < 0):
        raise ValueError(f"frequencies must be non-negative finite numbers, got {frequencies!r}.")
    if isinstance(frequencies, tuple) and freqs.size == 2:
        f = rng.uniform(freqs[0], freqs[1], size=n_samples)
    else:
        f = rng.choice(freqs, size=n_samples)
    t = np.arange(1, n_timesteps + 1) * dt
    inputs = np.repeat(f[:, None, None], n_timesteps, axis=1).astype(np.float32)
    targets = np.sin(2 * np.pi * f[:, None] * t[None, :])[:, :, None].astype(np.float32)
    return inputs, targets


share_parameters(make_running_max, make_integration)


PULSE_TASKS = {
    "flipflop": make_flipflop,
    "integration": make_integration,
    "delay": make_delay,
    "leaky_integration": make_leaky_integration,
    "running_max": make_running_max,
}


def make_task(task: str, n_samples: int = 256, n_timesteps: int = 50, n_channels: int = 3,
              *, random_state: RandomState = None, **task_params: object
              ) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``(inputs, targets)`` for a pulse task by name.

    Parameters
    ----------
    task : {'flipflop', 'integration', 'delay', 'leaky_integration', 'running_max'}
        Task name.
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_channels : int, default=3
        Number of input (and output) channels.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.
    **task_params
        Passed to the task's generator (for example ``n_bits`` or ``leak``).

    Returns
    -------
    inputs : ndarray of shape (n_samples, n_timesteps, n_channels)
        Noisy pulses, float32.
    targets : ndarray of shape (n_samples, n_timesteps, n_channels)
        The task's targets, float32.

    Raises
    ------
    ValueError
        If ``task`` is not one of the pulse tasks.

    Examples
    --------
    >>> from skdynamo.datasets import make_task
    >>> inputs, targets = make_task("delay", 4, 30, delay=2, random_state=0)
    >>> inputs.shape, targets.shape
    ((4, 30, 3), (4, 30, 3))
    """
    if task not in PULSE_TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(PULSE_TASKS)}.")
    return PULSE_TASKS[task](n_samples, n_timesteps, n_channels, random_state=random_state,
                             **task_params)


def make_random_probes(n_samples: int = 256, n_timesteps: int = 50, n_features: int = 3, *,
                       random_state: RandomState = None) -> np.ndarray:
    """Generic probe inputs for models whose task is unknown.

    A mix that excites most recurrent networks: sparse pulses of random amplitude (in
    [0.5, 1.5], either sign) on a noisy background, plus a per-sequence constant offset on
    a quarter of the sequences (so static-input tasks are probed too). Task inputs give a
    more meaningful map: pass them as ``probe_inputs`` whenever you have them.

    Parameters
    ----------
    n_samples : int, default=256
        Number of sequences.
    n_timesteps : int, default=50
        Length of each sequence.
    n_features : int, default=3
        Input features per step (the members' input width).
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    probes : ndarray of shape (n_samples, n_timesteps, n_features)
        The probe sequences, float32.
    """
    _check_sizes(n_samples, n_timesteps, n_features)
    rng = check_random_state(random_state)
    shape = (n_samples, n_timesteps, n_features)
    pulses = (rng.random_sample(shape) < 0.08) * rng.uniform(0.5, 1.5, shape) \
        * rng.choice([-1.0, 1.0], shape)
    offsets = (rng.random_sample((n_samples, 1, 1)) < 0.25) * rng.uniform(-1, 1, (n_samples, 1,
                                                                                  n_features))
    probes = pulses + offsets + 0.1 * rng.standard_normal(shape)
    return probes.astype(np.float32)
