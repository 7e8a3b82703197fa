"""The compositions the benchmark's methods are made of: the URL list split over DataLoader workers, our tar
reader or the article's, ``pipe:aws s3 cp`` URLs; and the peers our backends are judged against (torchdata
0.9's openers, webdataset, boto3 into ``BytesIO``, s3torchconnector into ``tarfile``), each a builder of a
dataset from a :class:`~.context.MethodContext`."""
import functools
import io
import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from .context import MethodContext

__all__ = ["article_samples", "aws_cp_pipes", "boto3_bytesio", "file_opener", "fsspec_file_opener", "iopath_file_opener",
           "repeated", "s3_file_loader", "s3torchconnector_tarfile", "samples", "url_pipe", "webdataset_pipe"]


def repeated(urls: Sequence[str], repeats: int) -> List[str]:
    return list(urls) * repeats


def url_pipe(urls: Sequence[str], context: MethodContext):
    from torch.utils.data.datapipes.iter import IterableWrapper

    # A finite list split over the DataLoader workers by sharding_filter(), like webdataset's split_by_worker.
    return IterableWrapper(repeated(urls, context.repeats)).sharding_filter()


def aws_cp_pipes(urls: Sequence[str], context: MethodContext) -> List[str]:
    """``pipe:aws s3 cp URL -`` for each URL, as the article and webdataset write them (the URLs quoted)."""
    import shlex

    from ...s3.backends._awscli import find_aws_command

    endpoint = f" --endpoint-url {shlex.quote(context.endpoint_url)}" if context.endpoint_url else ""
    return [f"pipe:{shlex.quote(find_aws_command())} s3 cp{endpoint} {shlex.quote(url)} -" for url in urls]


def samples(tar_streams):
    """``(url, stream)`` pairs to samples with our ``load_wds_shards``, the tar reader of every method but torchdata's."""
    import torchdata_s3ext  # noqa: F401  (registers load_wds_shards)

    return tar_streams.load_wds_shards()


def article_samples(tar_streams):
    """torchdata's ``load_from_tar`` then ``group_wds_samples``, as the article composes torchdata's openers."""
    import torchdata_s3ext  # noqa: F401  (registers group_wds_samples)

    return tar_streams.load_from_tar().group_wds_samples()


def fsspec_file_opener(context: MethodContext) -> Iterable:
    from torchdata.datapipes.iter import FSSpecFileOpener

    given = {"endpoint_url": context.endpoint_url, "profile": context.profile, "anon": context.anonymous or None}
    connection = {name: value for name, value in given.items() if value is not None}
    return article_samples(FSSpecFileOpener(url_pipe(context.urls, context), mode="rb", **connection))


def iopath_file_opener(context: MethodContext) -> Iterable:
    from torchdata.datapipes.iter import IoPathFileOpener

    from ...s3.client.clients import iopath_path_manager

    # iopath's own S3 handler wants an AWS profile; ours hands it this endpoint's client.
    path_manager = iopath_path_manager(context.s3_config())
    return article_samples(IoPathFileOpener(url_pipe(context.urls, context), mode="rb", pathmgr=path_manager))


def s3_file_loader(context: MethodContext) -> Iterable:
    from torchdata.datapipes.iter import S3FileLoader

    if context.endpoint_url:
        # The native handler reads its endpoint from these variables; this process runs this method only.
        scheme, _, host = context.endpoint_url.partition("://")
        os.environ.update(S3_ENDPOINT_URL=host, S3_USE_HTTPS="1" if scheme == "https" else "0", S3_VERIFY_SSL="0")
    return article_samples(S3FileLoader(url_pipe(context.urls, context), region=context.region or "us-east-1"))


def file_opener(context: MethodContext) -> Iterable:
    from torchdata.datapipes.iter import FileOpener

    return article_samples(FileOpener(url_pipe(context.mount_paths, context), mode="b"))


def _whole_object(config: Any, url: str) -> Tuple[str, io.BytesIO]:
    from ...s3.client.clients import boto3_client
    from ...s3.url import parse_s3_url

    location = parse_s3_url(url)
    body = boto3_client(config).get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    return url, io.BytesIO(body)


def boto3_bytesio(context: MethodContext) -> Iterable:
    # The article's boto3: the whole object read into memory, then a tar reader over it (ours, load_wds_shards:
    # torchdata's load_from_tar is gone from torchdata 0.10).
    config = context.s3_config()
    return samples(url_pipe(context.urls, context).map(functools.partial(_whole_object, config)))


def _s3torchconnector_reader(endpoint_url: Optional[str], region: Optional[str], url: str) -> Tuple[str, Any]:
    from s3torchconnector import S3ClientConfig

    from ...compat import crt_s3_client_class
    from ...s3.client.process import process_client
    from ...s3.url import parse_s3_url

    def make_client() -> Any:
        config = S3ClientConfig(force_path_style=endpoint_url is not None)
        return crt_s3_client_class()(region or "us-east-1", endpoint=endpoint_url, s3client_config=config)

    location = parse_s3_url(url)
    client = process_client("bench-s3torchconnector", (endpoint_url, region), make_client)
    return url, client.get_object(location.bucket, location.key)


def s3torchconnector_tarfile(context: MethodContext) -> Iterable:
    # s3torchconnector's sequential reader, read forward by tarfile in stream mode (r|*) in load_wds_shards.
    reader = functools.partial(_s3torchconnector_reader, context.endpoint_url, context.region)
    return samples(url_pipe(context.urls, context).map(reader))


def webdataset_pipe(context: MethodContext) -> Iterable:
    import webdataset

    from ...s3.backends._awscli import find_aws_command

    endpoint = f" --endpoint-url {context.endpoint_url}" if context.endpoint_url else ""
    urls = [f"pipe:{find_aws_command()} s3 cp{endpoint} {url} -" for url in repeated(context.urls, context.repeats)]
    return webdataset.WebDataset(urls, shardshuffle=False, empty_check=False)
