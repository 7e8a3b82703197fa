"""The package's layers hold: URL -> bytes (s3) -> samples -> epochs -> faces, the stage contract beneath them
all, with testing and tools beside them and never imported by the library; inside s3, its rooms (client, io,
cache, backends) in their order and the layers above reaching it through its ways in; no import circle; every
module keeps to one job (300 lines at most); only the DataLoader2 face
imports torchdata's datapipes or DataLoader2; only the compatibility module imports a library's private parts."""
import ast
import pathlib
from typing import Dict, Iterator, List, Set, Tuple

import pytest

import torchdata_s3ext

PACKAGE = pathlib.Path(torchdata_s3ext.__file__).parent
#: what each part of the package may import of the package (besides _config, _version, stage, compat and tally)
ALLOWED = {
    "s3": {"s3"},
    "samples": {"s3", "samples"},
    "epochs": {"s3", "samples", "epochs"},
    "faces": {"s3", "samples", "epochs", "faces"},
    "settings": {"s3", "samples", "epochs"},
    "mixing": {"s3", "samples", "epochs", "settings"},
    "pipeline": {"s3", "samples", "epochs", "faces", "settings", "mixing"},
    "writing": {"s3", "samples", "writing"},
    "sagemaker": {"s3", "samples", "epochs", "faces", "pipeline", "settings", "mixing", "sagemaker_fifo"},
    "sagemaker_fifo": set(),
    "__init__": {"s3", "samples", "epochs", "faces", "pipeline", "settings", "mixing", "sagemaker", "writing"},
    "testing": {"s3", "samples", "epochs", "faces", "pipeline", "settings", "mixing", "testing", "writing"},
    "tools": {"s3", "samples", "epochs", "faces", "pipeline", "settings", "mixing", "testing", "tools", "writing"},
    "__main__": {"tools"},
    "_config": set(),
    "_version": set(),
    "stage": set(),
    "compat": set(),
    "tally": set(),
}


#: what each room or module of s3 may import of s3, inside it (the rooms in their order: client, then io, then
#: cache and backends; the ways in above them)
S3_ROOMS = {
    "url": set(),
    "stats": set(),
    "keywords": set(),
    "client": {"url", "stats", "client"},
    "io": {"url", "stats", "client", "io"},
    "cache": {"url", "stats", "client", "io", "cache"},
    "backends": {"url", "stats", "client", "io", "backends"},
    "settings": {"backends", "keywords"},
    "opening": {"backends", "cache", "io", "settings"},
    "shard_index": {"url", "client"},
    "listing": {"url", "client", "shard_index"},
    "__init__": {"backends", "listing", "stats"},
}
#: what the layers that read (samples, epochs, faces, the pipeline, SageMaker, the package) may import of s3:
#: its ways in; writing, testing and tools may use any room
S3_WAYS_IN = {("s3",), ("s3", "opening"), ("s3", "settings"), ("s3", "listing"), ("s3", "shard_index"), ("s3", "stats"),
              ("s3", "url"), ("s3", "backends")}
READING_LAYERS = ("samples", "epochs", "faces", "pipeline", "sagemaker", "__init__")
#: import circles known and to be removed (module names as sets); any other circle fails, and so does one of
#: these once it is gone (then take it off this list)
KNOWN_CIRCLES: List[Set[str]] = []


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


@pytest.mark.parametrize("path, parts", [(path, parts) for path, parts in _modules() if parts[0] == "s3"],
                         ids=[str(path.relative_to(PACKAGE)) for path, parts in _modules() if parts[0] == "s3"])
def test_each_s3_room_imports_only_itself_and_the_rooms_before_it(path, parts):
    room = parts[1]
    for target in _imported(path, parts):
        if target[0] == "s3" and len(target) > 1:
            assert target[1] in S3_ROOMS[room], f"{'/'.join(parts)} imports torchdata_s3ext.{'.'.join(target)}"


@pytest.mark.parametrize("path, parts", [(path, parts) for path, parts in _modules() if parts[0] in READING_LAYERS],
                         ids=[str(path.relative_to(PACKAGE)) for path, parts in _modules() if parts[0] in READING_LAYERS])
def test_the_reading_layers_reach_s3_through_its_ways_in(path, parts):
    for target in _imported(path, parts):
        if target[0] == "s3":
            assert target[:2] in S3_WAYS_IN, f"{'/'.join(parts)} imports torchdata_s3ext.{'.'.join(target)}"


@pytest.mark.parametrize("path, parts", list(_modules()), ids=[str(path.relative_to(PACKAGE)) for path, _ in _modules()])
def test_every_module_stays_under_300_lines(path, parts):
    assert len(path.read_text().splitlines()) <= 300


def _import_graph() -> Dict[Tuple[str, ...], Set[Tuple[str, ...]]]:
    """Each module (a package by its ``__init__``) -> the modules of the package it imports, at any depth of
    its code (an import inside a function makes a circle all the same)."""
    modules = {parts[:-1] if parts[-1] == "__init__" else parts: (path, parts) for path, parts in _modules()}
    graph: Dict[Tuple[str, ...], Set[Tuple[str, ...]]] = {}
    for name, (path, parts) in modules.items():
        targets = set()
        for target in _imported(path, parts):
            while target and target not in modules:  # a name imported from a module: the module
                target = target[:-1]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _circles(graph: Dict[Tuple[str, ...], Set[Tuple[str, ...]]]) -> List[Set[str]]:
    """The import circles of ``graph``: its strongly connected parts of more than one module (Tarjan's)."""
    index: Dict[Tuple[str, ...], int] = {}
    low: Dict[Tuple[str, ...], int] = {}
    stack: List[Tuple[str, ...]] = []
    circles: List[Set[str]] = []

    def visit(node: Tuple[str, ...]) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                part.add(".".join(member))
                if member == node:
                    break
            if len(part) > 1:
                circles.append(part)

    for node in graph:
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_itself_through_a_circle():
    circles = _circles(_import_graph())
    assert sorted(map(sorted, circles)) == sorted(map(sorted, KNOWN_CIRCLES))


def test_a_circle_is_found_however_deep_its_import():
    graph = {("a",): {("b",)}, ("b",): {("c",)}, ("c",): {("a",)}, ("d",): {("a",)}}
    assert _circles(graph) == [{"a", "b", "c"}]


@pytest.mark.parametrize("path, parts", list(_modules()), ids=[str(path.relative_to(PACKAGE)) for path, _ in _modules()])
def test_only_the_compatibility_module_imports_a_library_s_private_parts(path, parts):
    if parts == ("compat",):
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = (node.module or "").split(".") + [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [part for alias in node.names for part in alias.name.split(".")]
        else:
            continue
        if names and names[0] != "torchdata_s3ext":
            assert not any(name.startswith("_") and not name.startswith("__") for name in names), \
                f"{'/'.join(parts)} imports {names}: private parts of a library belong in compat.py"


@pytest.mark.parametrize("path, parts", list(_modules()), ids=[str(path.relative_to(PACKAGE)) for path, _ in _modules()])
def test_only_the_dataloader2_face_imports_torchdata_datapipes_or_dataloader2(path, parts):
    if parts[:2] in (("faces", "dataloader2"), ("tools", "bench")):  # the bench measures torchdata 0.9's openers too
        return
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(name.startswith(("torchdata.datapipes", "torchdata.dataloader2")) for name in names), \
            f"{'/'.join(parts)} imports {names}"
