"""A method that fails is a row saying why in one line, its exception's type and message, in the table and
the JSON (the traceback kept apart in the JSON); a child that dies without a word says how it ended."""
import json
import textwrap

import pytest

from torchdata_s3ext.tools.bench.child import ChildFailed, error_message, run_in_child
from torchdata_s3ext.tools.cli import main

TINY = ["--shards", "2", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]
QUICK = ["--batch-size", "2", "--batches", "4", "--window", "2", "--time-limit", "60", "--num-workers", "0"]

BROKEN_STEP = textwrap.dedent("""
    def step(batch):
        raise RuntimeError("the step broke on\\n  a batch of " + str(len(batch["__key__"])))
""")


def test_a_failing_method_shows_its_exception_in_the_table_and_the_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_step.py").write_text(BROKEN_STEP)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the measuring children import the step from there
    out = tmp_path / "results"
    code = main(["bench", "--server", "moto", "--methods", "boto3", "raw", *TINY, *QUICK,
                 "--train-step", "broken_step:step", "--out", str(out)])
    output = capsys.readouterr().out
    assert code == 0, output  # raw was measured
    message = "RuntimeError: the step broke on a batch of 2"
    assert f"  {'boto3':<24}  0 workers  error: {message}\n" in output  # as it happens
    assert f"not measured:\n  boto3: {message}" in output
    assert "Traceback" not in output
    boto3_row, raw_row = json.loads((out / "results.json").read_text())["results"]
    assert boto3_row["status"] == "error" and boto3_row["error"] == message
    assert boto3_row["error_detail"].startswith("Traceback") and "broken_step.py" in boto3_row["error_detail"]
    assert raw_row["status"] == "ok" and "error" not in raw_row  # raw trains nothing: the step never ran


@pytest.fixture
def child_modules(tmp_path):
    (tmp_path / "raising_child.py").write_text(textwrap.dedent("""
        import sys
        from torchdata_s3ext.tools.bench.child import child_main

        def measure(job_json):
            raise ValueError("no shards under s3://bkt/none/")

        child_main(*sys.argv[1:3], measure=measure)
    """))
    (tmp_path / "killed_child.py").write_text(textwrap.dedent("""
        import os, signal, sys
        print("reading s3://bkt/shard-000000.tar", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    (tmp_path / "silent_child.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "import_failing_child.py").write_text("import no_such_module_here\n")
    return {"PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize("module, message", [
    ("raising_child", "ValueError: no shards under s3://bkt/none/"),
    ("killed_child", "killed by SIGKILL; it last printed: reading s3://bkt/shard-000000.tar"),
    ("silent_child", "exit status 3"),
    ("import_failing_child", "ModuleNotFoundError: No module named 'no_such_module_here'"),
])
def test_a_child_without_a_result_says_how_it_ended_in_one_line(module, message, child_modules):
    with pytest.raises(ChildFailed) as failed:
        run_in_child(module, "{}", timeout=60, env=child_modules)
    assert str(failed.value) == message


def test_the_childs_traceback_is_kept_as_the_detail(child_modules):
    with pytest.raises(ChildFailed) as failed:
        run_in_child("raising_child", "{}", timeout=60, env=child_modules)
    assert failed.value.detail.startswith("Traceback (most recent call last):")
    assert failed.value.detail.rstrip().endswith("ValueError: no shards under s3://bkt/none/")


def test_error_messages_name_the_type_and_an_oserrors_url():
    assert error_message(FileNotFoundError(2, "no such key", "s3://bkt/a.tar")) == "FileNotFoundError: s3://bkt/a.tar: no such key"
    assert error_message(TimeoutError()) == "TimeoutError"
