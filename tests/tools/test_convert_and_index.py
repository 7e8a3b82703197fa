"""``torchdata-s3ext convert`` (a folder of files -> shards and their index, writers in parallel) and
``torchdata-s3ext index`` (the index of shards already written), end to end."""
import io
import os

import boto3
import pytest
import webdataset

from torchdata_s3ext import wds_pipe
from torchdata_s3ext.tools.cli import main
from torchdata_s3ext.tools.convert import group_files
from torchdata_s3ext.writing import read_shard_index


def make_folder(root, count=40):
    """Files of ``count`` samples in two subfolders (jpg, cls, json each), and two files of no sample."""
    files = {}
    for index in range(count):
        folder = root / ("train" if index % 2 else "val") / f"part{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        for field, data in (("jpg", os.urandom(20_000 + index)), ("cls", str(index).encode()), ("meta.json", b'{"i": %d}' % index)):
            (folder / f"img{index:04d}.{field}").write_bytes(data)
            files[f"{folder.relative_to(root)}/img{index:04d}.{field}"] = data
    (root / "README").write_bytes(b"no sample")
    (root / "train" / ".hidden").write_bytes(b"no sample either")
    return files


def members_read_back(urls, backend="auto"):
    """``{member path: bytes}`` of every sample's fields, as our reader gives them."""
    found = {}
    for sample in wds_pipe(urls, decode=False, shuffle=False, backend=backend):
        for field, data in sample.items():
            if not field.startswith("__"):
                member = f"{sample['__key__']}.{field}"
                assert member not in found, f"{member} read twice"
                found[member] = data
    return found


def test_group_files_groups_by_key_up_to_the_first_dot_and_skips_files_of_no_sample(tmp_path):
    files = make_folder(tmp_path, count=4)
    samples, skipped = group_files(str(tmp_path))
    assert [sample.key for sample in samples] == ["train/part0/img0003", "train/part1/img0001", "val/part0/img0000",
                                                  "val/part2/img0002"]
    assert [field for field, _ in samples[0].files] == ["cls", "jpg", "meta.json"]
    assert samples[0].size == sum(len(files[f"train/part0/img0003.{f}"]) for f in ("cls", "jpg", "meta.json"))
    assert sorted(os.path.basename(path) for path in skipped) == [".hidden", "README"]


def test_group_files_refuses_two_files_that_are_one_field_to_a_reader(tmp_path):
    (tmp_path / "a.JPG").write_bytes(b"1")
    (tmp_path / "a.jpg").write_bytes(b"2")
    with pytest.raises(ValueError, match=r"a\.(JPG|jpg) and .*a\.(jpg|JPG) are the same field 'jpg' of sample 'a'"):
        group_files(str(tmp_path))


def test_convert_in_parallel_to_s3_writes_every_file_once_and_the_index(tmp_path, s3_server, s3_bucket, capsys):
    files = make_folder(tmp_path / "src")
    code = main(["convert", str(tmp_path / "src"), f"s3://{s3_bucket}/data", "--jobs", "3", "--max-mib", "0.2",
                 "--no-progress", "--endpoint-url", s3_server.endpoint_url])
    output = capsys.readouterr().out
    assert code == 0, output
    index = read_shard_index(f"s3://{s3_bucket}/data/index.json")
    assert index.urls == [f"s3://{s3_bucket}/data/shard-{n:06d}.tar" for n in range(len(index.urls))]
    assert len(index.urls) > 3 and index.num_samples == 40
    assert members_read_back(index.urls) == files
    assert "skipping 2 files that belong to no sample" in output
    assert f"wrote {len(index.urls)} shards, 40 samples, and s3://{s3_bucket}/data/index.json" in output
    keys = [entry["Key"] for entry in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(keys) == sorted(["data/index.json"] + [url.split("/", 3)[3] for url in index.urls])


def test_convert_to_a_local_pattern_keeps_file_names_and_shows_progress(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Photo_1.Image.PNG").write_bytes(b"png bytes")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out" / "part-%03d.tar"), "--jobs", "1"]) == 0
    assert "writing" in capsys.readouterr().err
    shard = (tmp_path / "out" / "part-000.tar").read_bytes()
    assert [sample["__key__"] for sample in webdataset.WebDataset([str(tmp_path / "out" / "part-000.tar")],
                                                                  shardshuffle=False, empty_check=False)] == ["Photo_1"]
    import tarfile

    assert tarfile.open(fileobj=io.BytesIO(shard)).getnames() == ["Photo_1.Image.PNG"]
    assert read_shard_index(str(tmp_path / "out" / "index.json")).sample_counts == [1]


def test_convert_of_a_folder_without_samples_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README").write_bytes(b"x")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out")]) == 1
    assert f"{tmp_path / 'src'}: no file makes a sample" in capsys.readouterr().err


@pytest.mark.parametrize("full_read", [False, True])
def test_index_writes_the_index_of_shards_written_by_webdataset(full_read, s3_server, s3_bucket, capsys):
    client = boto3.client("s3")
    counts = [3, 5, 0, 2]
    for number, count in enumerate(counts):
        buffer = io.BytesIO()
        with webdataset.TarWriter(buffer) as writer:
            for index in range(count):
                writer.write({"__key__": f"s{number}_{index}", "bin": os.urandom(200_000), "cls": index})
        client.put_object(Bucket=s3_bucket, Key=f"old/shard-{number:06d}.tar", Body=buffer.getvalue())
    args = ["index", f"s3://{s3_bucket}/old/", "--no-progress", "--endpoint-url", s3_server.endpoint_url]
    assert main(args + (["--full-read"] if full_read else [])) == 0
    output = capsys.readouterr().out
    index = read_shard_index(f"s3://{s3_bucket}/old/index.json")
    assert index.sample_counts == counts
    assert index.etags == [client.head_object(Bucket=s3_bucket, Key=f"old/shard-{n:06d}.tar")["ETag"] for n in range(4)]
    assert f"wrote s3://{s3_bucket}/old/index.json: 4 shards, 10 samples; read " in output and " HEADs, 1 LISTs" in output


def test_index_of_a_local_folder_to_another_place(tmp_path, capsys):
    assert main(["convert", str(_folder_of_samples(tmp_path)), str(tmp_path / "shards"), "--no-progress",
                 "--max-samples", "2"]) == 0
    written = read_shard_index(str(tmp_path / "shards" / "index.json"))
    assert main(["index", str(tmp_path / "shards"), "--out", str(tmp_path / "again.json"), "--no-progress"]) == 0
    again = read_shard_index(str(tmp_path / "again.json"))
    assert again.urls == [os.path.join(str(tmp_path / "shards"), os.path.basename(url)) for url in written.urls]
    assert again.sample_counts == written.sample_counts == [2, 2, 1] and again.sizes == written.sizes


def _folder_of_samples(root):
    folder = root / "src"
    folder.mkdir()
    for index in range(5):
        (folder / f"k{index}.txt").write_text(f"text {index}")
    return folder
