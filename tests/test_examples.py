"""What a new user meets first: the examples' command line, torchdata's deprecation banner, and the local S3
server's message when moto is not installed."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from torchdata_s3ext.testing import LocalS3Server
from torchdata_s3ext.testing import _server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BANNER = "'datapipes', 'dataloader2' modules are deprecated"


@pytest.fixture(scope="module")
def article_pipelines():
    spec = importlib.util.spec_from_file_location("article_pipelines", EXAMPLES / "article_pipelines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_python(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=120)


def test_article_pipelines_help_prints_usage_and_exits_0():
    result = run_python(str(EXAMPLES / "article_pipelines.py"), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: article_pipelines.py")
    assert "--backends" in result.stdout and "--num-workers" in result.stdout
    assert BANNER not in result.stderr


def test_article_pipelines_names_the_package_a_backend_lacks(article_pipelines, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "s3torchconnector", None)  # find_spec: None, as when it is not installed
    assert article_pipelines.missing_package("s3torchconnector").startswith("s3torchconnector")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert article_pipelines.missing_package("awscli").startswith("awscli")
    assert article_pipelines.missing_package("boto3") is None


def test_article_pipelines_skips_a_missing_backend_with_one_line(article_pipelines, monkeypatch, capsys, wds_shards):
    shards = wds_shards(samples_per_shard_list=[2, 3], image_size=8)
    monkeypatch.setitem(sys.modules, "s3torchconnector", None)
    article_pipelines.run(shards.urls, ["s3torchconnector", "boto3"], num_workers=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["s3torchconnector:", "skipped,", "needs", "s3torchconnector", "(pip", "install",
                                "'torchdata-s3ext[s3torchconnector]')"]
    assert lines[1].split()[:3] == ["boto3:", "5", "samples,"]
    assert len(lines) == 2


@pytest.mark.dataloader2  # (torchdata 0.9's banner)
def test_banner_printed_before_our_import_is_torchdatas_and_none_follows_it():
    marker = "--- torchdata_s3ext imported ---"
    result = run_python(
        "-c",
        "import sys, torchdata, torchdata.dataloader2, torchdata_s3ext\n"
        f"print({marker!r}, file=sys.stderr, flush=True)\n"
        "import torchdata.datapipes.iter\n"
        # torchdata warns once per process: make it warn again, to see that our filter is what stops it.
        "torchdata._warning_shown = False\n"
        "torchdata.deprecation_warning()\n",
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stderr.split(marker)
    assert BANNER in before and "torchdata" in before
    assert after.strip() == ""


@pytest.mark.dataloader2  # (torchdata 0.9's banner)
def test_importing_us_first_means_no_banner_at_all():
    result = run_python("-W", "default", "-c", "import torchdata_s3ext, torchdata.dataloader2, torchdata.datapipes.iter")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_our_banner_filter_lets_other_warnings_through():
    result = run_python("-c", "import warnings, torchdata_s3ext; warnings.warn('modules are deprecated elsewhere')")
    assert "modules are deprecated elsewhere" in result.stderr


def test_local_s3_server_without_moto_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)
    monkeypatch.delitem(sys.modules, "moto.server", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"^the local S3 server needs moto: pip install 'torchdata-s3ext\[test\]'") as error:
        LocalS3Server().start()
    assert "[bench]" in str(error.value) and "\n" not in str(error.value)
    assert error.value.name == "moto"


def test_local_s3_server_checks_for_moto_before_starting_a_process(monkeypatch):
    monkeypatch.setattr(_server.importlib.util, "find_spec", lambda name, package=None: None)
    monkeypatch.setattr(_server.subprocess, "Popen", lambda *args, **kwargs: pytest.fail("started a process"))
    with pytest.raises(ModuleNotFoundError, match="needs moto"):
        LocalS3Server().start()
