"""The type stubs (_native.pyi) name what the native module has, and nothing else."""

import ast
from pathlib import Path

import pyshmarray as shm
from pyshmarray import _native

STUBS = Path(shm.__file__).with_name("_native.pyi")


def stub_classes():
    tree = ast.parse(STUBS.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = {
                n.name
                for n in node.body
                if isinstance(n, ast.FunctionDef)
            } | {
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            }
            classes[node.name] = (names, [b.id for b in node.bases if isinstance(b, ast.Name)])
    return classes


def all_stub_names(classes, cls):
    names, bases = classes[cls]
    out = set(names)
    for b in bases:
        out |= all_stub_names(classes, b)
    return out


def test_every_stubbed_method_exists_and_every_public_one_is_stubbed():
    classes = stub_classes()
    for cls in classes:
        if cls.startswith("_"):
            continue
        runtime = getattr(_native, cls)
        stubbed = all_stub_names(classes, cls)
        public = {n for n in dir(runtime) if not n.startswith("_")}
        dunders = {n for n in stubbed if n.startswith("__")}
        missing_at_runtime = {n for n in stubbed - dunders if not hasattr(runtime, n)}
        assert not missing_at_runtime, f"{cls}: stubbed but absent: {missing_at_runtime}"
        unstubbed = public - stubbed
        assert not unstubbed, f"{cls}: public but not in the stubs: {unstubbed}"
        for d in dunders - {"__buffer__"}:
            assert hasattr(runtime, d), f"{cls}.{d} stubbed but absent"


def test_every_public_function_is_stubbed():
    tree = ast.parse(STUBS.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    runtime = {
        n
        for n in dir(_native)
        if callable(getattr(_native, n)) and not isinstance(getattr(_native, n), type)
    }
    assert runtime - {"__getattr__"} <= funcs | {n for n in runtime if n.startswith("__")}
