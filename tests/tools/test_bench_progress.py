"""A bench method's progress reaches the command while the measuring child runs; the child's pipes are read
as it goes, and a child that overruns its time is killed."""
import textwrap

import pytest

from torchdata_s3ext.tools.bench.progress import PROGRESS_ENV, ProgressFile, read_progress
from torchdata_s3ext.tools.bench.child import ChildFailed, run_in_child

CHILD = textwrap.dedent("""
    import json, sys, time
    from torchdata_s3ext.tools.bench.progress import ProgressFile

    job_path, result_path = sys.argv[1:3]
    progress = ProgressFile()
    sys.stderr.write("x" * 200_000)  # more than a pipe holds: the parent must read while it waits
    for count in range(1, 4):
        time.sleep(0.4)
        progress.done(count, force=True)
    if json.load(open(job_path)).get("hang"):
        time.sleep(60)
    json.dump({"done": 3}, open(result_path, "w"))
""")


@pytest.fixture
def child_module(tmp_path):
    (tmp_path / "fake_bench_child.py").write_text(CHILD)
    return {"PYTHONPATH": str(tmp_path)}


def test_the_childs_progress_reaches_the_parent_while_it_runs(child_module):
    seen = []
    result = run_in_child("fake_bench_child", "{}", timeout=60, env=child_module, progress=seen.append)
    assert result == {"done": 3}
    assert seen[-1] is None and 3 in seen[:-1] and seen[:-1] == sorted(seen[:-1])


def test_a_child_that_overruns_its_time_is_killed_and_reported(child_module):
    seen = []
    with pytest.raises(ChildFailed, match=r"killed after 3 s"):
        run_in_child("fake_bench_child", '{"hang": true}', timeout=3, env=child_module, progress=seen.append)
    assert seen[-1] is None


def test_progress_is_written_only_when_asked_and_at_most_a_few_times_a_second(tmp_path, monkeypatch):
    path = tmp_path / "progress"
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    ProgressFile().done(5, force=True)
    assert not path.exists() and read_progress(str(path)) == 0
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    progress = ProgressFile()
    progress.done(1)
    progress.done(2)  # within the quarter second: not written
    assert read_progress(str(path)) == 1
    progress.done(3, force=True)
    assert read_progress(str(path)) == 3
