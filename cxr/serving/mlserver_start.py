"""`python -m cxr.serving.mlserver_start start FOLDER`: MLServer's own `mlserver` command, less one notice.

With adaptive batching on, MLServer 1.7 logs at WARNING, on every start, that batching does not apply to
inference streaming (`mlserver/batching/hooks.py`). Nothing here streams (the Open Inference Protocol's
unary `infer` is what is served and batched), so that line would only teach operators to skip warnings.
This entry point drops exactly that record and runs MLServer's command line unchanged; every other
message, warnings included, is logged as MLServer logs it. `cxr serve --protocol v2` and the KServe
ServingRuntime (infra/k8s/kserve/servingruntime.yaml) start MLServer through it.
"""

from __future__ import annotations

import logging
import sys

from mlserver.cli import main as mlserver_main

STREAMING_NOTICE = "but not supported for inference streaming"


def not_the_streaming_notice(record: logging.LogRecord) -> bool:
    return STREAMING_NOTICE not in record.getMessage()


def main() -> int:
    logging.getLogger("mlserver").addFilter(not_the_streaming_notice)
    sys.argv[0] = "mlserver"
    return mlserver_main()


if __name__ == "__main__":
    sys.exit(main())
