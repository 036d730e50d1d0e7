"""Running skdynamo on a dask cluster (needs ``dask[distributed]``: ``pip install skdynamo[dask]``).

Recording, in ``fit``, ``transform`` and ``score``, is one joblib loop over the members;
under ``joblib.parallel_config(backend="dask")`` its tasks run on the workers of the
active ``distributed.Client``. :class:`TorchThreads` gives every worker process a fixed
number of torch threads, also on workers that join or restart later.
"""

from __future__ import annotations

try:
    from distributed import WorkerPlugin
except ImportError as exc:  # pragma: no cover - exercised only without distributed
    raise ImportError("skdynamo.utils.dask needs dask's distributed scheduler: "
                      "pip install 'skdynamo[dask]'.") from exc

__all__ = ["TorchThreads"]


class TorchThreads(WorkerPlugin):
    """A dask worker plugin that sets the number of torch threads of each worker process.

    A worker with several task threads (``--nthreads``) then runs as many recordings at
    once, each on ``n_threads`` torch threads. Workers started by a nanny (the default of
    ``dask worker`` and of ``LocalCluster(processes=True)``) already start with
    ``OMP_NUM_THREADS=1``, hence one torch thread; the plugin makes the count explicit,
    sets another one, and covers workers started without a nanny. Workers of
    ``LocalCluster(processes=False)`` are threads of the client's own process: the
    plugin would change that process's torch threads too.

    Parameters
    ----------
    n_threads : int, default=1
        Torch intra-op threads per worker process (``torch.set_num_threads``).

    Raises
    ------
    ValueError
        If ``n_threads`` is not a positive integer.

    Examples
    --------
    >>> from skdynamo.utils.dask import TorchThreads
    >>> TorchThreads(1)
    TorchThreads(n_threads=1)

    On a cluster (``client = distributed.Client(address)``)::

        client.register_plugin(TorchThreads(1))
        with joblib.parallel_config(backend="dask"):
            Z = DynamoEmbedder(probe_inputs=probes).fit_transform(models)
    """

    name = "skdynamo-torch-threads"

    def __init__(self, n_threads: int = 1) -> None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(f"TorchThreads: n_threads must be a positive integer; got "
                             f"{n_threads!r}.")
        self.n_threads = n_threads

    def __repr__(self) -> str:
        return f"TorchThreads(n_threads={self.n_threads})"

    def setup(self, worker: object) -> None:
        """Set the worker process's torch threads (called by dask on each worker).

        Parameters
        ----------
        worker : distributed.Worker
            The worker being set up.
        """
        import torch

        torch.set_num_threads(self.n_threads)
