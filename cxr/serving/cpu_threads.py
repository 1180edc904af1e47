"""The serving process's BLAS threads.

NumPy's OpenBLAS starts one thread per core and its threads busy-wait for a while after each call. In the
web app every model call ends with small NumPy products (the input gate's and the scope check's scores,
the drift projection), so those spinning threads take the cores from TensorFlow's next call: on 2 cores,
16 concurrent clients got 5.66 requests/s with OpenBLAS's default threads and 7.48 with one
(`bench/serve_blas_threads.py`). The serving process therefore limits BLAS to `serve.blas_threads`;
training and evaluation, where NumPy's large products benefit from every core, keep the default.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_blas_threads(threads: int) -> None:
    """Every BLAS library loaded in this process uses at most `threads` threads from now on (0: leave
    the libraries' defaults)."""
    if threads > 0:
        threadpool_limits(limits=threads, user_api="blas")
