"""``bench --link s3like``: the endpoint reached through a local proxy that gives every connection S3's
bandwidth and time to first byte, so that a loopback server does not make every method look equally fast."""
import argparse
import contextlib
import dataclasses
from typing import Dict, Tuple

from .cpus import pinned_to
from .methods import MethodContext

__all__ = ["LINKS", "through_link", "link_label"]

#: ``--link``: none, or a proxy that gives every connection S3's bandwidth and time to first byte
LINKS = ("none", "s3like")


def through_link(
    args: argparse.Namespace, context: MethodContext, env: Dict[str, str], stack: contextlib.ExitStack
) -> Tuple[MethodContext, Dict[str, str]]:
    """``context`` and ``env`` pointed at an S3-like link to their ``http://`` endpoint (``cli_checks`` made sure
    of it) when ``--link s3like``, else as given;
    the proxy (threads of this process) runs on ``--server-cpus``, as the server does, and stops when ``stack``
    closes."""
    if args.link == "none":
        return context, env
    from ...testing import FaultPlan, S3Proxy

    plan = FaultPlan(bandwidth_bytes_per_s=args.link_mbps * 1e6, first_byte_latency_s=args.link_latency_ms / 1000)
    with pinned_to(args.server_cpus):  # its serving thread, and the thread per connection it starts, keep these
        proxy = stack.enter_context(S3Proxy(context.endpoint_url, plan))
    print(f"link s3like: {args.link_mbps:g} MB/s and {args.link_latency_ms:g} ms to first byte per connection, "
          f"through {proxy.endpoint_url}", flush=True)
    return dataclasses.replace(context, endpoint_url=proxy.endpoint_url), {**env, "AWS_ENDPOINT_URL": proxy.endpoint_url}


def link_label(args: argparse.Namespace) -> str:
    """How the endpoint was reached, for the table's title and the chart's: empty without a link."""
    if args.link == "none":
        return ""
    return f"; link s3like ({args.link_mbps:g} MB/s, {args.link_latency_ms:g} ms per connection)"
