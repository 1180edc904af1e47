"""An S3-compatible server (moto) whose objects survive a restart, for the team stack where MinIO cannot be had.

moto keeps state in memory; its recorder appends every request to a file (here on the stack's volume)
and replays that file at start, so `make stack-down && make stack-up` finds every bucket and object.
"""

import os
import signal
import threading
import urllib.request

from moto.server import ThreadedMotoServer

HOST = os.environ.get("MOTO_HOST", "0.0.0.0")
PORT = int(os.environ.get("MOTO_PORT", "9000"))


def main() -> None:
    recording = os.environ.setdefault("MOTO_RECORDER_FILEPATH", "/data/recording.jsonl")
    os.environ.setdefault("MOTO_ENABLE_RECORDING", "true")
    server = ThreadedMotoServer(ip_address=HOST, port=PORT, verbose=False)
    server.start()
    if os.path.isfile(recording) and os.path.getsize(recording) > 0:
        request = urllib.request.Request(
            f"http://127.0.0.1:{PORT}/moto-api/recorder/replay-recording", method="POST", data=b""
        )
        urllib.request.urlopen(request, timeout=600).close()
        print(f"replayed {recording}", flush=True)
    print(f"S3 (moto) listening on {HOST}:{PORT}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
