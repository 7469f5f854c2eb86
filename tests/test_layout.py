"""The layout tells the architecture, and this keeps it honest: no import
cycle between the package's modules, and the pure parts import neither
Zope nor waitress (read from the source, as written)."""

import ast
import pathlib

import collective.futures


PACKAGE = pathlib.Path(collective.futures.__file__).parent
#: What "Zope" means for the pure parts: the application server and what
#: only it brings. zope.interface (the contracts) is allowed.
ZOPE = ("AccessControl", "Acquisition", "App", "OFS", "Products", "ZODB",
        "ZPublisher", "Zope2", "persistent", "transaction", "waitress",
        "zExceptions", "zope.component", "zope.globalrequest", "zope.event")
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


def zope_imports(path):
    return sorted(imported for _, imported in imports(path)
                  if any(imported == z or imported.startswith(z + ".")
                         for z in ZOPE))


def test_the_core_and_the_executors_import_neither_zope_nor_waitress():
    for name, path in sorted(modules().items()):
        if name.split(".")[2:3] and name.split(".")[2] in PURE:
            assert zope_imports(path) == [], name


def test_the_purity_check_sees_zope_imports():
    # Positive control: the glue does import Zope, and the check sees it.
    glue = PACKAGE / "zope" / "sandbox.py"
    assert "AccessControl.SecurityManagement" in zope_imports(glue)
    assert "waitress.channel" in zope_imports(PACKAGE / "server" / "internals.py")
