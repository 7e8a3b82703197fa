"""The command answers ``--help``, ``--version`` and every mistake in its options at once: without importing
torch, in one line naming the option and what to give, before anything runs or is written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdata_s3ext.tools.bench.cpus import cpus_problem, format_cpus, parse_cpu_list
from torchdata_s3ext.tools.cli import main
from torchdata_s3ext.tools.cli_checks import PNG_DECODERS, png_decoder_name

ROOT = Path(__file__).resolve().parents[2]

#: runs the CLI's main() with the package root's own imports (``torchdata_s3ext/__init__.py``, which imports
#: the library and so torch) set aside: the package is made a module without running its ``__init__``, as a
#: light root would leave it. What is then imported is the CLI's own doing.
CLI_ALONE = """
import importlib.util, json, sys
spec = importlib.util.find_spec("torchdata_s3ext")
sys.modules["torchdata_s3ext"] = importlib.util.module_from_spec(spec)
from torchdata_s3ext.tools.cli import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "torchdata", "boto3", "botocore", "PIL"})
print("heavy:", ",".join(heavy), file=sys.stderr)
"""

ANSWERED_AT_ONCE = [
    ["--help"],
    ["--version"],
    ["bench", "--help"],
    ["bench", "s3://bucket/x", "--methods", "boto4"],
    ["bench", "s3://bucket/x", "--batch-size", "0"],
    ["bench", "s3://bucket/x", "--decode", "nope"],
    ["bench", "s3://bucket/x", "--decoders", "pil", "nope"],
    ["bench", "s3://bucket/x", "--client-cpus", "0,99999"],
    ["bench", "s3://bucket/x", "--num-workers", "two"],
    ["serve", "--port", "0"],
    ["make-dataset", "s3://bucket/x", "--classes", "0"],
]


def _run_cli_alone(argv):
    result = subprocess.run([sys.executable, "-c", CLI_ALONE, json.dumps(argv)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    heavy = [line for line in result.stderr.splitlines() if line.startswith("heavy:")]
    assert heavy, result.stderr
    return heavy[-1][len("heavy:"):].strip(), result


@pytest.mark.parametrize("argv", ANSWERED_AT_ONCE, ids=" ".join)
def test_help_version_and_mistakes_import_no_torch_boto3_or_pil(argv):
    heavy, result = _run_cli_alone(argv)
    assert heavy == "", f"{argv} imported {heavy}\n{result.stderr}"
    assert "Traceback" not in result.stderr


#: the installed command's entry point (setup.cfg's console script), run as a fresh process runs it
INSTALLED = """
import json, sys
from torchdata_s3ext_cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as stop:
    code = stop.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "torchdata", "boto3", "botocore", "PIL"})
print("heavy:", ",".join(heavy), "code:", code, file=sys.stderr)
"""


def _run_installed(argv):
    result = subprocess.run([sys.executable, "-c", INSTALLED, json.dumps(argv)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    heavy, code = result.stderr.splitlines()[-1][len("heavy:"):].split("code:")
    return heavy.strip(), code.strip(), result


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["bench", "s3://bucket/x", "--methods", "boto4"],
                                  ["bench", "s3://bucket/x", "--batch-size", "0"]], ids=" ".join)
def test_the_installed_command_answers_help_version_and_mistakes_without_importing_torch(argv):
    heavy, code, result = _run_installed(argv)
    assert heavy == "", result.stderr
    if argv[0].startswith("--"):
        assert code == "0", result.stderr
    else:  # one line naming the mistake, and a failing status
        assert code not in ("0", "None") and argv[-1] in code, result.stderr
    assert "Traceback" not in result.stderr


def test_the_installed_command_runs_a_command_with_the_whole_package(tmp_path):
    heavy, code, result = _run_installed(["make-dataset", str(tmp_path / "data"), "--shards", "1",
                                          "--samples-per-shard", "2", "--size", "8", "--no-progress"])
    assert code == "0", result.stderr
    assert "wrote " in result.stdout and (tmp_path / "data" / "shard-000000.tar").exists()
    assert "torch" in heavy  # the package's root was imported for the command, whole


BENCH = ["bench", "s3://bucket/train", "--methods", "raw"]


@pytest.mark.parametrize("argv, message", [
    ([*BENCH, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ([*BENCH, "--batch-size", "-3"], "--batch-size must be at least 1, got -3"),
    ([*BENCH, "--batches", "0"], "--batches must be at least 1, got 0"),
    ([*BENCH, "--window", "0"], "--window must be at least 1, got 0"),
    ([*BENCH, "--num-workers", "2", "-1"], r"--num-workers must not be negative, got \[2, -1\]"),
    ([*BENCH, "--time-limit", "0"], "--time-limit must be more than 0, got 0"),
    ([*BENCH, "--decode-samples", "0"], "--decode-samples must be at least 1, got 0"),
    ([*BENCH, "--decode-rounds", "-1"], "--decode-rounds must be at least 1, got -1"),
    ([*BENCH, "--part-size", "0"], "--part-size must be more than 0, got 0"),
    ([*BENCH, "--part-size", "1e-9"], r"--part-size must be at least one byte \(9.5e-07 MiB\), got 1e-09"),
    ([*BENCH, "--concurrency", "0"], "--concurrency must be at least 1, got 0"),
    ([*BENCH, "--memory-budget", "0"], "--memory-budget must be more than 0, got 0"),
    ([*BENCH, "--memory-budget", "6"], r"--memory-budget must hold two parts of 4 MiB \(one read, one in flight\): at least 8, got 6"),
    ([*BENCH, "--memory-budget", "64", "--part-size", "8"], "--memory-budget sizes the parts itself: give it or --part-size/--concurrency, not both"),
    ([*BENCH, "--link", "s3like", "--link-mbps", "0"], "--link-mbps must be more than 0, got 0"),
    ([*BENCH, "--link", "s3like", "--link-latency-ms", "-5"], "--link-latency-ms must not be negative, got -5"),
    ([*BENCH, "--cache-dir", "/tmp/c", "--cache-limit", "-1"], "--cache-limit must not be negative, got -1"),
    ([*BENCH, "--link", "s3like", "--endpoint-url", "https://s3.example.com"],
     "--link s3like needs an http:// endpoint .*, got https://s3.example.com"),
    ([*BENCH, "--cache-limit", "100"], r"--cache-limit needs --cache-dir \(the cache it limits\)"),
    ([*BENCH, "--train-step", "steps.decode"], "--train-step must be MODULE:FUNCTION"),
    ([*BENCH, "--server-cpus", "0"], "--server-cpus pins the server the bench starts: give --server too"),
    ([*BENCH, "--client-cpus", "0,99999"], "--client-cpus 0,99999: no CPU 99999 here; this machine lets the bench use CPUs "),
    ([*BENCH, "--shards", "0", "--server", "moto"], "--shards must be at least 1, got 0"),
    (["bench", "--methods", "raw"], r"give SRC \(s3://bucket/prefix or a folder\), or --server to make one"),
    (["bench", "s3://bucket/train", "--methods", "boto4"], "unknown method 'boto4'; valid methods: all, boto3"),
    (["demo", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["make-dataset", "s3://bucket/x", "--samples-per-shard", "0"], "--samples-per-shard must be at least 1, got 0"),
    (["make-dataset", "s3://bucket/x", "--size", "-16"], "--size must be at least 1, got -16"),
    (["make-dataset", "s3://bucket/x", "--classes", "300"], r"--classes must be at most 256 \(labels are uint8\), got 300"),
    (["make-dataset", "s3://bucket/x", "--seed", "-1"], "--seed must not be negative, got -1"),
    (["make-dataset", "s3://bucket/x", "--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["serve", "--port", "70000"], "--port must be at most 65535, got 70000"),
    (["serve", "--for", "-1"], "--for must be more than 0, got -1"),
])
def test_a_wrong_option_is_one_line_naming_it_and_nothing_is_written(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where bench-results/ would go
    out = ["--out", str(tmp_path / "results")] if argv[0] in ("bench", "demo") else []
    with pytest.raises(SystemExit, match=message) as stopped:
        main([*argv, *out])
    assert str(stopped.value.code).startswith(f"torchdata-s3ext {argv[0]}: ")
    assert "\n" not in str(stopped.value.code)
    assert os.listdir(tmp_path) == []


def test_a_wrong_option_exits_non_zero_with_its_line_on_stderr():
    result = subprocess.run([sys.executable, "-m", "torchdata_s3ext", "bench", "s3://bucket/x", "--batch-size", "0"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == "torchdata-s3ext bench: --batch-size must be at least 1, got 0"


def test_out_that_is_a_file_is_refused_before_the_run(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(SystemExit, match="--out .*results is a file; give a folder"):
        main(["bench", "s3://bucket/x", "--methods", "raw", "--out", str(tmp_path / "results")])


def test_list_methods_needs_no_source():
    assert main(["bench", "--list-methods"]) == 0


def _message(check, name):
    with pytest.raises(ValueError) as raised:
        check(name)
    return str(raised.value)


def test_the_clis_png_decoder_names_and_message_are_the_librarys():
    from torchdata_s3ext.samples.decode import DECODERS, check_decoder_name

    assert PNG_DECODERS == DECODERS
    assert _message(png_decoder_name, "nope") == _message(check_decoder_name, "nope")
    assert all(png_decoder_name(name) == check_decoder_name(name) for name in DECODERS)


@pytest.mark.parametrize("text, cpus", [("0", (0,)), ("3,0-1", (0, 1, 3)), ("2-3,3", (2, 3)), (" 1 , 4", (1, 4))])
def test_cpu_lists_read_as_taskset_writes_them(text, cpus):
    assert parse_cpu_list(text) == cpus
    assert parse_cpu_list(format_cpus(cpus)) == cpus


@pytest.mark.parametrize("text", ["", "a", "-1", "3-1", "1,,2", "0-", "1.5"])
def test_a_cpu_list_that_is_not_one_says_how_to_write_it(text):
    with pytest.raises(ValueError, match=r"write CPU numbers and ranges as taskset -c does, e.g. 0 or 0,2-3"):
        parse_cpu_list(text)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux's CPU affinity")
def test_cpus_this_process_may_use_are_accepted_and_others_named():
    usable = sorted(os.sched_getaffinity(0))
    assert cpus_problem("--client-cpus", usable) is None
    missing = max(usable) + 1
    assert cpus_problem("--client-cpus", [usable[0], missing]) == (
        f"--client-cpus {format_cpus([usable[0], missing])}: no CPU {missing} here; "
        f"this machine lets the bench use CPUs {format_cpus(usable)}")
