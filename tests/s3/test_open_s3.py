"""open_s3 on every backend, over HTTP against the local S3 server: same bytes, each member once."""
import io
import pickle
import socket
import tarfile

import pytest
from torch.utils.data import DataLoader
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext
from torchdata_s3ext import S3Config

S3_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]


def read_members(dp):
    return [(name.rsplit("/", 1)[1], stream.read()) for name, stream in dp.load_from_tar()]


def expected_members(shards):
    return [(f"{key}.{field}", shards.samples[key][field]) for key in shards.keys for field in ("image", "label")]


@pytest.mark.parametrize("backend", S3_BACKENDS + ["auto"])
def test_open_s3_reads_every_member_once_on_every_backend(backend, wds_shards):
    shards = wds_shards(num_shards=3, samples_per_shard=3)
    assert read_members(IterableWrapper(shards.urls).open_s3(backend=backend)) == expected_members(shards)


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_open_s3_reads_shards_written_by_webdataset_tarwriter(backend, s3_server, s3_bucket):
    import boto3
    import webdataset

    buffer = io.BytesIO()
    with webdataset.TarWriter(buffer) as writer:
        for index in range(3):
            writer.write({"__key__": f"dir/sample_{index}", "image": b"I" * (index + 1), "label": b"L" * 700})
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="wds.tar", Body=buffer.getvalue())
    members = read_members(IterableWrapper([f"s3://{s3_bucket}/wds.tar"]).open_s3(backend=backend))
    assert members == [(f"sample_{i}.{f}", data) for i in range(3) for f, data in (("image", b"I" * (i + 1)), ("label", b"L" * 700))]


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_open_s3_reads_empty_shard_as_no_members(backend, wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=2, empty_shards=[0])
    assert read_members(IterableWrapper(shards.urls).open_s3(backend=backend)) == expected_members(shards)


def test_open_s3_local_backend_reads_paths_and_file_urls(tmp_path):
    from torchdata_s3ext.testing import seed_samples, tar_bytes

    samples = list(seed_samples(2))
    (tmp_path / "a.tar").write_bytes(tar_bytes(samples))
    urls = [str(tmp_path / "a.tar"), (tmp_path / "a.tar").as_uri()]
    members = read_members(IterableWrapper(urls).open_s3(backend="local"))
    one = [(f"{k}.{f}", v[f]) for k, v in samples for f in ("image", "label")]
    assert members == one + one


@pytest.mark.parametrize("backend", ["boto3", "fsspec"])
def test_open_s3_ranged_streams_are_seekable_so_load_from_tar_reads_members_whole(backend, wds_shards):
    shards = wds_shards(num_shards=1)
    url, stream = next(iter(IterableWrapper(shards.urls).open_s3(backend=backend)))
    assert url == shards.urls[0] and stream.name == url and stream.seekable()
    stream.close()


def test_open_s3_pickles_without_clients_and_reads_after_round_trip(wds_shards):
    shards = wds_shards(num_shards=1)
    dp = IterableWrapper(shards.urls).open_s3(backend="boto3")
    list(read_members(dp))  # clients now exist in this process
    copy = pickle.loads(pickle.dumps(dp))
    assert read_members(copy) == expected_members(shards)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
@pytest.mark.parametrize("backend", ["boto3", "fsspec", "s3torchconnector"])
def test_open_s3_in_dataloader_workers_delivers_each_member_once(backend, start_method, wds_shards):
    shards = wds_shards(num_shards=4, samples_per_shard=2)
    dp = IterableWrapper(shards.urls).sharding_filter().open_s3(backend=backend).load_from_tar()
    dp = dp.map(_name_and_bytes)
    # Touch a client in the parent first: the workers must not reuse it.
    read_members(IterableWrapper(shards.urls[:1]).open_s3(backend=backend))
    loader = DataLoader(dp, batch_size=None, num_workers=2, multiprocessing_context=start_method, timeout=120)
    assert sorted(tuple(member) for member in loader) == sorted(expected_members(shards))


def _name_and_bytes(member):
    name, stream = member
    return name.rsplit("/", 1)[1], stream.read()


@pytest.mark.dataloader2
def test_open_s3_under_dataloader2(wds_shards):
    from torchdata.dataloader2 import DataLoader2

    shards = wds_shards(num_shards=2, samples_per_shard=2)
    dp = IterableWrapper(shards.urls).open_s3().load_from_tar().map(_name_and_bytes)
    loader = DataLoader2(dp)
    try:
        assert list(loader) == expected_members(shards)
    finally:
        loader.shutdown()


def test_open_s3_reads_endpoint_from_aws_endpoint_url(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    assert IterableWrapper([]).open_s3().config.endpoint_url == s3_server.endpoint_url
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert IterableWrapper([]).open_s3(endpoint_url="http://127.0.0.1:9").config.endpoint_url == "http://127.0.0.1:9"


def test_open_s3_explicit_endpoint_url_works_without_environment(wds_shards, s3_server, monkeypatch):
    shards = wds_shards(num_shards=1)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    dp = IterableWrapper(shards.urls).open_s3(backend="boto3", endpoint_url=s3_server.endpoint_url)
    assert read_members(dp) == expected_members(shards)


def test_open_s3_rejects_unknown_backend_listing_valid_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'gcs'; valid backends: auto, boto3, fsspec, iopath"):
        IterableWrapper([]).open_s3(backend="gcs")


@pytest.mark.parametrize("url", ["http://bucket/key.tar", "/data/shard.tar", "s3://bucket-only"])
def test_open_s3_rejects_url_that_is_not_s3(url, s3_server):
    with pytest.raises(ValueError, match="S3 URL"):
        list(IterableWrapper([url]).open_s3(backend="boto3"))


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_open_s3_missing_key_raises_file_not_found_naming_url(backend, wds_shards, s3_bucket):
    wds_shards(num_shards=1)
    url = f"s3://{s3_bucket}/train/no-such-shard.tar"
    with pytest.raises(FileNotFoundError, match=url):
        read_members(IterableWrapper([url]).open_s3(backend=backend))


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_open_s3_missing_bucket_raises_file_not_found_naming_url(backend, s3_server):
    url = "s3://no-such-bucket-here/shard.tar"
    with pytest.raises(FileNotFoundError, match=url):
        read_members(IterableWrapper([url]).open_s3(backend=backend))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("backend", ["boto3", "fsspec", "iopath", "awscli"])
def test_open_s3_unreachable_endpoint_fails_at_once_naming_endpoint_and_url(backend, s3_server):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    config = S3Config(endpoint_url=endpoint, connect_timeout=1, max_attempts=5)
    retries_before = _retries()
    with pytest.raises(ConnectionError, match="s3://bucket/shard.tar") as error:
        read_members(IterableWrapper(["s3://bucket/shard.tar"]).open_s3(backend=backend, config=config))
    assert endpoint in str(error.value)
    assert _retries() == retries_before  # not retried with backoff


def _retries() -> int:
    from torchdata_s3ext.s3.stats import process_stats

    return process_stats().retries


def test_open_s3_missing_key_on_local_backend_names_path(tmp_path):
    path = str(tmp_path / "missing.tar")
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        list(IterableWrapper([path]).open_s3(backend="local"))


def test_s3fileloader_without_native_extension_names_alternatives(wds_shards, monkeypatch):
    import torchdata

    from torchdata_s3ext.s3.client import process

    shards = wds_shards(num_shards=1)
    monkeypatch.setattr(torchdata, "_torchdata", None, raising=False)
    monkeypatch.setattr(process, "_clients", {})
    with pytest.raises(ModuleNotFoundError, match="native S3 extension.*boto3, fsspec"):
        read_members(IterableWrapper(shards.urls).open_s3(backend="s3fileloader"))
    assert read_members(IterableWrapper(shards.urls).open_s3(backend="boto3")) == expected_members(shards)


def test_secrets_never_appear_in_repr_or_errors(s3_server):
    config = S3Config(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="very-secret-value",
                      aws_session_token="token-secret", endpoint_url=s3_server.endpoint_url)
    dp = IterableWrapper(["s3://no-such-bucket-here/x.tar"]).open_s3(backend="boto3", config=config)
    assert "very-secret-value" not in repr(config) and "token-secret" not in repr(config)
    with pytest.raises(OSError) as error:
        read_members(dp)
    assert "very-secret-value" not in str(error.value)


def test_explicit_credentials_are_used_by_boto3_and_fsspec(wds_shards, s3_server, monkeypatch):
    shards = wds_shards(num_shards=1)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    config = S3Config(aws_access_key_id="key", aws_secret_access_key="secret", region="us-east-1")
    for backend in ("boto3", "fsspec", "iopath", "awscli"):
        assert read_members(IterableWrapper(shards.urls).open_s3(backend=backend, config=config)) == expected_members(shards)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"endpoint_url": "localhost:9000"}, "must start with http"),
        ({"aws_access_key_id": "only-the-id"}, "give both"),
        ({"anonymous": True, "aws_access_key_id": "a", "aws_secret_access_key": "b"}, "anonymous"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"read_timeout": 0}, "positive"),
    ],
)
def test_s3config_rejects_inconsistent_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S3Config(**kwargs)


def test_tar_with_directory_member_reads_files_only(s3_server, s3_bucket):
    import boto3

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("dir"), None) if False else None
        directory = tarfile.TarInfo("dir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        info = tarfile.TarInfo("dir/a.image")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="d.tar", Body=buffer.getvalue())
    assert read_members(IterableWrapper([f"s3://{s3_bucket}/d.tar"]).open_s3()) == [("a.image", b"abc")]


def test_s3config_verify_ssl_reaches_boto3_and_the_aws_cli():
    from torchdata_s3ext.s3.backends._awscli import _command
    from torchdata_s3ext.s3.client.clients import boto3_client_kwargs

    config = S3Config(endpoint_url="https://127.0.0.1:9443", verify_ssl=False)
    assert boto3_client_kwargs(config)["verify"] is False
    assert "--no-verify-ssl" in _command("s3://bucket/key.tar", 0, "-", config, "aws", ())
    assert boto3_client_kwargs(S3Config())["verify"] is True


def test_open_s3_anonymous_keyword_reaches_the_config_and_reads_unsigned(wds_shards, s3_server, s3_bucket):
    import boto3

    shards = wds_shards(num_shards=2)
    public_url, private_url = shards.urls
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    client.put_object_acl(Bucket=s3_bucket, Key=public_url.split("/", 3)[3], ACL="public-read")
    dp = IterableWrapper([public_url]).open_s3(anonymous=True)
    assert dp.config.anonymous is True
    assert [name for name, _ in dp.load_from_tar()] != []
    with pytest.raises(PermissionError, match=private_url):  # unsigned, so the private object is denied
        read_members(IterableWrapper([private_url]).open_s3(anonymous=True))


def test_open_s3_config_keywords_are_laid_over_config_where_not_none():
    base = S3Config(region="eu-west-1", max_attempts=5, read_timeout=30.0)
    dp = IterableWrapper([]).open_s3(config=base, max_attempts=2, region=None, verify_ssl=False, profile="team")
    assert (dp.config.region, dp.config.max_attempts, dp.config.read_timeout) == ("eu-west-1", 2, 30.0)
    assert (dp.config.verify_ssl, dp.config.profile) == (False, "team")
    assert dp.settings.options == {}


@pytest.mark.parametrize("backend, options", [
    ("boto3", "part_size, concurrency, verify_etag"),
    ("iopath", "part_size, concurrency"),  # passes other keywords on to iopath, but not a near-miss
    ("awscli", "aws_command, extra_args, buffer_size"),
])
def test_open_s3_rejects_a_misspelt_keyword_at_construction_naming_it(backend, options):
    with pytest.raises(TypeError, match=r"'anonymus' for backend '\w+' \(did you mean 'anonymous'\?\)") as error:
        IterableWrapper(["s3://bucket/shard.tar"]).open_s3(backend=backend, anonymus=True)
    assert ", ".join(S3Config.field_names()) in str(error.value)
    assert f"options of backend {backend!r}: {options}" in str(error.value)


def test_open_s3_rejects_an_unknown_backend_option_at_construction():
    with pytest.raises(TypeError, match=r"unknown keyword argument 'block_size' for backend 'fsspec'"):
        IterableWrapper([]).open_s3(backend="fsspec", block_size=1 << 20)


@pytest.mark.parametrize("backend, options", [
    ("boto3", {"part_size": 4096, "concurrency": 2, "verify_etag": True}),
    ("fsspec", {"part_size": 4096, "concurrency": 2}),
    ("awscli", {"buffer_size": 4096}),
    ("s3fileloader", {"request_timeout_ms": -1}),
])
def test_open_s3_passes_backend_options_through_beside_config_fields(backend, options, wds_shards):
    shards = wds_shards(num_shards=1)
    dp = IterableWrapper(shards.urls).open_s3(backend=backend, max_attempts=4, **options)
    assert dp.settings.options == options and dp.config.max_attempts == 4
    if backend != "s3fileloader":  # its native extension may be missing; construction is what is checked
        assert read_members(dp) == expected_members(shards)


def test_wds_pipe_max_attempts_reaches_both_listing_and_reading(wds_shards, s3_server, s3_bucket):
    from torchdata_s3ext.testing import FaultPlan, S3Proxy

    shards = wds_shards(num_shards=1)
    with S3Proxy(s3_server.endpoint_url, FaultPlan(slow_down_every=1)) as proxy:  # every GET, LIST too, is 503
        with pytest.raises(OSError, match=f"SlowDown.*s3://{s3_bucket}/train/"):
            torchdata_s3ext.wds_pipe(f"s3://{s3_bucket}/train/", endpoint_url=proxy.endpoint_url, max_attempts=2)
        assert proxy.object_gets == 2
    with S3Proxy(s3_server.endpoint_url, FaultPlan(slow_down_every=1)) as proxy:
        pipe = torchdata_s3ext.wds_pipe(shards.urls, endpoint_url=proxy.endpoint_url, max_attempts=2, decode=False)
        with pytest.raises(OSError, match="gave up after 2 attempts"):
            list(pipe)
        assert proxy.object_gets == 2


def test_wds_pipe_rejects_a_misspelt_keyword_before_listing():
    with pytest.raises(TypeError, match=r"'max_attempt' .*did you mean 'max_attempts'"):
        torchdata_s3ext.wds_pipe("s3://bucket/no-such-prefix/", max_attempt=2)
