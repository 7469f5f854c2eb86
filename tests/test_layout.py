"""The layout tells the architecture, and this keeps it honest: no import
cycle between the package's modules, and the pure parts (core/,
executors/) import only the standard library, zope.interface and each
other: read from the source, and as a fresh interpreter really loads them."""

import ast
import json
import pathlib
import subprocess
import sys

import collective.futures


PACKAGE = pathlib.Path(collective.futures.__file__).parent
PURE = ("core", "executors")


def module_name(path):
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path):
    """(module-level?, imported module name) for each import in ``path``,
    relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found = []
    top_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend((id(node) in top_level, n) for n in names)
    return found


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph():
    known = modules()
    edges = {}
    for name, path in known.items():
        # Imports inside functions count too: a cycle hidden in a function
        # is still a cycle of the design.
        edges[name] = {imported for _, imported in imports(path)
                       if imported in known and imported != name}
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_the_cycle_finder_finds_one():
    # Positive control: the check above can fail.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


#: What the pure parts may import: the standard library, zope.interface
#: (the contracts), and the package's own pure parts.
PURE_OWN = tuple(f"collective.futures.{name}" for name in
                 PURE + ("exceptions", "interfaces", "settings"))


def allowed(imported):
    top = imported.split(".")[0]
    return (top in sys.stdlib_module_names
            or top == "__mp_main__"  # multiprocessing's alias of __main__
            or imported == "collective.futures" or imported == "collective"
            or imported == "zope" or imported.startswith("zope.interface")
            or any(imported == own or imported.startswith(own + ".")
                   for own in PURE_OWN))


def pure_modules():
    return {name: path for name, path in modules().items()
            if name.split(".")[2:3] and name.split(".")[2] in PURE}


def test_the_core_and_the_executors_import_only_the_stdlib_and_zope_interface():
    for name, path in sorted(pure_modules().items()):
        assert [i for _, i in imports(path) if not allowed(i)] == [], name


def test_the_import_allowlist_refuses_zope_and_the_glue():
    # Positive control: what the glue imports is refused.
    for imported in ("AccessControl.SecurityManagement", "transaction",
                     "zope.component", "zope.globalrequest", "waitress.channel",
                     "collective.futures.sandbox", "collective.futures.api",
                     "collective.futures.server.internals"):
        assert not allowed(imported), imported
    assert allowed("zope.interface.verify") and allowed("concurrent.futures")


SCRIPT = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(names):
    """The modules a fresh interpreter loads to import ``names``."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def test_importing_the_pure_parts_loads_no_zope_and_no_waitress():
    # Transitively, as Python really imports them (the package __init__
    # included): the pure core is testable with plain Python.
    loaded = loaded_by(sorted(pure_modules()))
    assert [m for m in loaded if not allowed(m)] == []


def test_the_runtime_import_check_sees_zope():
    # Positive control: the sandbox does load Zope, and the check sees it.
    loaded = loaded_by(["collective.futures.sandbox"])
    assert "AccessControl" in [m for m in loaded if not allowed(m)]
