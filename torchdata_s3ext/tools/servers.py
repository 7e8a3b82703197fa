"""Local S3 servers for the command: started for ``bench --server`` and ``demo``, or run by ``serve`` until
Ctrl-C or SIGTERM (with ``--example``, holding the bucket README's snippets read)."""
import argparse
import contextlib
import shlex
import signal
import time
from typing import Any, Dict, Optional, Sequence

from .bench.cpus import pinned_to

__all__ = ["start_server", "server_config", "serve", "shell_exports", "export_line"]


def start_server(kind: str, buckets: Sequence[str], stack: contextlib.ExitStack, port: Optional[int] = None,
                 cpus: Optional[Sequence[int]] = None) -> Any:
    """A started local server of ``kind`` holding ``buckets`` on ``port`` (``None``: a free one) and running on
    ``cpus`` (``None``: any), stopped when ``stack`` closes."""
    from ..testing import LocalS3Server, RcloneServer, S3rverServer

    server = S3rverServer(buckets=buckets) if kind == "s3rver" else RcloneServer(buckets=buckets) if kind == "rclone" else LocalS3Server()
    server.port = port  # a ServerProcess picks a free port at start when this is None
    with pinned_to(cpus):  # the server process inherits this thread's CPUs, and its threads inherit them in turn
        stack.enter_context(server)
    if kind != "moto":
        return server
    from ..s3.client.clients import boto3_client

    client = boto3_client(server_config(server))
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return server


def server_config(server: Any) -> Any:
    """An :class:`S3Config` for a started local server, with its credentials."""
    from .._config import S3Config

    env = server.env()
    return S3Config(endpoint_url=server.endpoint_url, region=env["AWS_DEFAULT_REGION"],
                    aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def shell_exports(env: Dict[str, str]) -> str:
    """An ``export NAME=value`` line per variable, sorted."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()))


def export_line(env: Dict[str, str]) -> str:
    """All of ``env`` in one ``export A=1 B=2`` line, to paste into a shell.

    >>> export_line({"B": "2", "A": "x y"})
    "export A='x y' B=2"
    """
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in sorted(env.items()))


def _stop_on_sigterm(signal_number: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stop as Ctrl-C does: the ExitStack below stops the server process


def serve(args: argparse.Namespace) -> int:
    """``serve``: a server until Ctrl-C, SIGTERM or ``--for`` seconds; 0 once it is stopped."""
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _serve_until_stopped(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _put_example(server: Any) -> str:
    """Put README's example in ``server``; what it holds, in a line."""
    from ..s3.client.clients import boto3_client
    from ..testing import put_example_dataset

    urls = put_example_dataset(boto3_client(server_config(server)))
    train = [url for url in urls if "/train/" in url]
    return (f"README's example: {len(train)} shards in {train[0].rsplit('/', 1)[0]}/ ({train[0].rsplit('/', 1)[1]} .. "
            f"{train[-1].rsplit('/', 1)[1]}), and in {urls[-1].rsplit('/', 1)[0]}/ a good shard, then one cut short")


def _serve_until_stopped(args: argparse.Namespace) -> int:
    from ..testing import EXAMPLE_BUCKET

    buckets = list(dict.fromkeys(args.bucket + ([EXAMPLE_BUCKET] if args.example else [])))
    # A stop (Ctrl-C, SIGTERM) may come at any point, even while the example is put or the lines below are
    # printed: the ExitStack stops the server process whatever the point.
    try:
        with contextlib.ExitStack() as stack:
            server = start_server(args.server, buckets, stack, args.port)
            print(f"{args.server} S3 server on {server.endpoint_url}; buckets: {', '.join(buckets) or '(none)'}", flush=True)
            if args.example:
                print(_put_example(server))
                print("to read it from a shell, paste:\n" + export_line(server.env()))
            else:
                print("to use it from a shell:\n" + shell_exports(server.env()))
            print("Ctrl-C stops it" + (f"; stopping by itself after {args.duration:g} s" if args.duration else ""), flush=True)
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    print("stopped")
    return 0
