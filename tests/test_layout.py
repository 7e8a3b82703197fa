"""The package's layers hold: URL -> bytes (s3) -> samples -> epochs -> faces, the stage contract beneath them
all, with testing and tools beside them and never imported by the library; every module keeps to one job
(under 400 lines); only the DataLoader2 face imports torchdata's datapipes or DataLoader2."""
import ast
import pathlib
from typing import Iterator, Tuple

import pytest

import torchdata_s3ext

PACKAGE = pathlib.Path(torchdata_s3ext.__file__).parent
#: what each part of the package may import of the package (besides _config, _version, stage, compat and tally)
ALLOWED = {
    "s3": {"s3"},
    "samples": {"s3", "samples"},
    "epochs": {"s3", "samples", "epochs"},
    "faces": {"s3", "samples", "epochs", "faces"},
    "pipeline": {"s3", "samples", "epochs", "faces"},
    "writing": {"s3", "samples", "writing"},
    "sagemaker": {"s3", "samples", "epochs", "faces", "pipeline", "sagemaker_fifo"},
    "sagemaker_fifo": set(),
    "__init__": {"s3", "samples", "epochs", "faces", "pipeline", "sagemaker", "writing"},
    "testing": {"s3", "samples", "epochs", "faces", "pipeline", "testing", "writing"},
    "tools": {"s3", "samples", "epochs", "faces", "pipeline", "testing", "tools", "writing"},
    "__main__": {"tools"},
    "_config": set(),
    "_version": set(),
    "stage": set(),
    "compat": set(),
    "tally": set(),
}


def _modules() -> Iterator[Tuple[pathlib.Path, Tuple[str, ...]]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE).with_suffix("").parts


def _imported(path: pathlib.Path, parts: Tuple[str, ...]) -> Iterator[Tuple[str, ...]]:
    """The package modules ``path`` imports, as parts relative to the package."""
    package = parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + tuple((node.module or "").split(".") if node.module else ())
                names = [base + (alias.name,) for alias in node.names] if not node.module else [base]
                yield from names
            elif node.module and node.module.startswith("torchdata_s3ext"):
                yield tuple(node.module.split(".")[1:])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("torchdata_s3ext."):
                    yield tuple(alias.name.split(".")[1:])


@pytest.mark.parametrize("path, parts", list(_modules()), ids=[str(path.relative_to(PACKAGE)) for path, _ in _modules()])
def test_each_module_imports_only_its_own_layer_and_those_before_it(path, parts):
    allowed = ALLOWED[parts[0]] | {"_config", "_version", "stage", "compat", "tally"}
    for target in _imported(path, parts):
        assert target and target[0] in allowed, f"{'/'.join(parts)} imports torchdata_s3ext.{'.'.join(target)}"


@pytest.mark.parametrize("path", [path for path, _ in _modules()], ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_module_stays_under_400_lines(path):
    assert len(path.read_text().splitlines()) < 400


@pytest.mark.parametrize("path, parts", list(_modules()), ids=[str(path.relative_to(PACKAGE)) for path, _ in _modules()])
def test_only_the_dataloader2_face_imports_torchdata_datapipes_or_dataloader2(path, parts):
    if parts[:2] in (("faces", "dataloader2"), ("tools", "bench")):  # the bench measures torchdata 0.9's openers too
        return
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(name.startswith(("torchdata.datapipes", "torchdata.dataloader2")) for name in names), \
            f"{'/'.join(parts)} imports {names}"
