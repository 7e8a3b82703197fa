"""README.md runs as shown: every ```python block against the local S3 server, its cheap ```sh commands.

The snippets name ``s3://my-bucket/train/shard-{000000..000003}.tar`` (4 shards x 8 samples) and
``s3://my-bucket/damaged/`` (a good shard of 4 samples, then one cut inside its third sample); ``readme_dataset``
writes them first with ``put_example_dataset``, which ``torchdata-s3ext serve --example`` serves too. A block that
defines ``test_*`` functions is run as those tests, with their fixtures, and must be part of the example file
it stands for.
"""
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

from torchdata_s3ext.testing import put_example_dataset

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: sh commands not run here, by how they start: they install, need real S3, or run for minutes
SKIPPED = {
    "pip install": "installs packages",
    "python -m pip install": "installs packages",
    "torchdata-s3ext demo": "runs for minutes (its --help is checked instead)",
    "torchdata-s3ext make-dataset s3://": "writes the article's 420 MB shards",
    "torchdata-s3ext bench s3://": "runs for minutes",
    "torchrun": "needs several machines",
    "torchdata-s3ext serve --example": "serves until stopped (tests/tools/test_serve_example.py runs it, and the snippets against it)",
    "make ": "makes virtualenvs and runs for minutes (CI runs make test)",
}
#: what a command not skipped may start with: anything else must be added to SKIPPED or made cheap here
RUNNABLE = ("torchdata-s3ext", "python -m torchdata_s3ext")
#: the example files README blocks are taken from
EXAMPLES = (ROOT / "examples" / "test_my_pipeline.py",)


class Block(NamedTuple):
    language: str
    line: int
    code: str


def readme_blocks(language: str) -> List[Block]:
    text = README.read_text()
    return [
        Block(match.group(1), text.count("\n", 0, match.start()) + 2, match.group(2))
        for match in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL)
        if match.group(1) == language
    ]


def sh_commands() -> List[str]:
    """The commands of the ```sh blocks, continuation lines joined, comment lines and blanks dropped."""
    commands = []
    for block in readme_blocks("sh"):
        for command in block.code.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def skip_reason(command: str):
    return next((reason for start, reason in SKIPPED.items() if command.startswith(start)), None)


@pytest.fixture(scope="module")
def readme_dataset(s3_server):
    import boto3

    put_example_dataset(boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1"))
    return s3_server


def _needs(block: Block):
    """The torchdata face a block needs, as a mark that skips it where that torchdata is not installed."""
    if "torchdata.nodes" in block.code:
        return [pytest.mark.nodes]
    if "torchdata.dataloader2" in block.code:
        return [pytest.mark.dataloader2]
    return []


@pytest.mark.parametrize("block", [pytest.param(block, marks=_needs(block), id=f"README.md:{block.line}")
                                   for block in readme_blocks("python")])
def test_readme_python_block_runs(block: Block, readme_dataset, request):
    namespace = {"__name__": "readme_snippet"}
    exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    if tests:
        assert any(block.code in path.read_text() for path in EXAMPLES), (
            f"README.md:{block.line} defines tests but is not part of {', '.join(p.name for p in EXAMPLES)}")
    for test in tests:
        test(**{name: request.getfixturevalue(name) for name in inspect.signature(test).parameters})


def test_readme_shows_the_example_test_file_verbatim():
    example = EXAMPLES[0].read_text()
    shown = [block.code for block in readme_blocks("python") if "def test_" in block.code]
    assert shown, "README.md shows no test"
    assert all(code in example for code in shown)
    assert example.endswith(shown[-1]), "README.md shows the example test file up to its end"


@pytest.mark.parametrize("command", sh_commands())
def test_readme_sh_command_runs(command: str):
    reason = skip_reason(command)
    if reason:
        pytest.skip(reason)
    assert command.startswith(RUNNABLE), f"README command {command!r}: add it to SKIPPED or make it cheap here"
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    finished = subprocess.run(shlex.split(command, comments=True), capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert finished.returncode == 0, f"{command}: exit {finished.returncode}\n{finished.stderr[-2000:]}"


def test_readme_commands_that_are_skipped_parse():
    """The skipped commands of our own CLI at least take the options the README gives them."""
    from torchdata_s3ext.tools.cli import build_parser

    for command in sh_commands():
        if skip_reason(command) and command.startswith("torchdata-s3ext "):
            build_parser().parse_args(shlex.split(command, comments=True)[1:])
