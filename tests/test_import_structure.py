"""The package's structure: no import circle, and every module imports on its own in a fresh interpreter."""
import ast
import pathlib
import subprocess
import sys

import bioplastic

ROOT = pathlib.Path(bioplastic.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = ("bioplastic", *f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _module_level_imports(name: str, path: pathlib.Path, modules) -> set[str]:
    """Modules of the package imported when ``name`` is imported (not inside functions or TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                visit([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    head = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(head + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                found.update(subs if subs and len(subs) == len(node.names) else [base, *subs])

    visit(ast.parse(path.read_text()).body)
    found = {m for m in found if m in modules}
    for target in list(found):  # importing a.b.c first runs the packages a and a.b (unless name lies inside them)
        parts = target.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
    return found - {name}


def test_no_import_circle():
    modules = _modules()
    graph = {name: _module_level_imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])


def test_every_module_imports_first():
    # Each module imported first, with no other bioplastic module loaded (one interpreter, torch kept loaded).
    names = [n for n in _modules() if not n.endswith("__main__")]
    script = (
        "import importlib, sys, torch\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'bioplastic' or m.startswith('bioplastic.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
