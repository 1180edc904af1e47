"""An S3-compatible server (moto) whose objects survive a restart, for the team stack where MinIO cannot be had.

moto keeps its state in memory. This keeps a copy of every object under /data (the stack's volume):
a sync every few seconds writes new and changed objects and drops deleted ones, a last sync runs on
SIGTERM (`docker-compose down`), and at start the copy is uploaded back. Objects written in the last
few seconds before a crash (not a clean stop) can be lost: it is a stand-in for MinIO, not a store.
"""

import os
import shutil
import signal
import threading
from pathlib import Path
from urllib.parse import quote, unquote

import boto3
from moto.server import ThreadedMotoServer

HOST = os.environ.get("MOTO_HOST", "0.0.0.0")
PORT = int(os.environ.get("MOTO_PORT", "9000"))
ROOT = Path(os.environ.get("MOTO_DATA_DIR", "/data")) / "objects"
SYNC_SECONDS = float(os.environ.get("MOTO_SYNC_SECONDS", "5"))


def client():
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{PORT}",
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        region_name="us-east-1",
    )


def path_for(bucket: str, key: str) -> Path:
    return ROOT / bucket / quote(key, safe="")


def restore(s3) -> int:
    count = 0
    for bucket_dir in sorted(p for p in ROOT.glob("*") if p.is_dir()):
        try:
            s3.create_bucket(Bucket=bucket_dir.name)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for file in bucket_dir.iterdir():
            if file.name.endswith(".part"):
                continue
            with open(file, "rb") as body:
                s3.put_object(Bucket=bucket_dir.name, Key=unquote(file.name), Body=body)
            count += 1
    return count


def sync(s3, seen: dict) -> None:
    """Write objects that are new or changed since the last sync; remove what was deleted."""
    present = set()
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        (ROOT / name).mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                ident = (name, obj["Key"])
                present.add(ident)
                if seen.get(ident) == obj["ETag"]:
                    continue
                target = path_for(*ident)
                partial = target.with_name(target.name + ".part")
                with open(partial, "wb") as out:
                    shutil.copyfileobj(s3.get_object(Bucket=name, Key=obj["Key"])["Body"], out)
                partial.replace(target)
                seen[ident] = obj["ETag"]
    for ident in set(seen) - present:
        path_for(*ident).unlink(missing_ok=True)
        del seen[ident]


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    server = ThreadedMotoServer(ip_address=HOST, port=PORT, verbose=False)
    server.start()
    s3 = client()
    print(f"restored {restore(s3)} objects from {ROOT}", flush=True)
    seen: dict = {}
    sync(s3, seen)
    print(f"S3 (moto) listening on {HOST}:{PORT}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(SYNC_SECONDS):
        try:
            sync(s3, seen)
        except Exception as exc:  # keep serving; the next sync retries
            print(f"sync failed: {exc}", flush=True)
    sync(s3, seen)
    server.stop()


if __name__ == "__main__":
    main()
