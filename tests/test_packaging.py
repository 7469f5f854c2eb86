"""The package as users get it (.ci/wheel-check builds the wheel and runs
the core suite on it): the check that every file of src/ is in the wheel
and the sdist, on made-up archives; the version in one place, in the form
zest.releaser reads."""

import importlib.util
import pathlib
import re
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def contents_module():
    spec = importlib.util.spec_from_file_location(
        "wheel_contents", ROOT / ".ci" / "wheel_contents.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def archives(tmp_path, names):
    tmp_path.mkdir(parents=True, exist_ok=True)
    wheel = tmp_path / "x-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, "")
    sdist = tmp_path / "x-1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in names:
            path = tmp_path / "sdist" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
            archive.add(path, arcname=f"x-1/src/{name}")
    return wheel, sdist


def test_every_package_file_of_the_tree_is_required_in_both_archives(tmp_path):
    check = contents_module()
    tree = tmp_path / "tree"
    for name in ("collective/futures/configure.zcml", "collective/futures/x.py",
                 "collective/futures/plone/profiles/default/metadata.xml",
                 "collective.futures.egg-info/PKG-INFO",
                 "collective/futures/__pycache__/x.cpython-311.pyc"):
        (tree / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / "src" / name).write_text("")
    wanted = check.package_files(tree)
    assert wanted == ["collective/futures/configure.zcml",
                      "collective/futures/plone/profiles/default/metadata.xml",
                      "collective/futures/x.py"]
    assert check.missing(tree, *archives(tmp_path / "all", wanted)) == ([], [])
    # The control: a wheel without the profile (a package-data pattern
    # forgotten) is caught, naming the file.
    partial = archives(tmp_path / "partial", wanted[:1] + wanted[2:])
    assert check.missing(tree, *partial) == (
        ["collective/futures/plone/profiles/default/metadata.xml"],
        ["collective/futures/plone/profiles/default/metadata.xml"])


def test_the_real_tree_has_the_files_a_site_needs():
    names = contents_module().package_files(ROOT)
    for kind in (".zcml", ".pt", ".xml", ".html", "py.typed"):
        assert any(name.endswith(kind) for name in names), kind


def test_the_version_is_in_one_place_and_changes_rst_is_as_zest_releaser_reads_it():
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(),
                        re.M).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.dev0", version), version
    lines = (ROOT / "CHANGES.rst").read_text().splitlines()
    # The first heading: the version being developed, "(unreleased)",
    # underlined with dashes of its length.
    first = next(number for number, line in enumerate(lines) if line.endswith("(unreleased)"))
    heading = lines[first]
    assert heading == f"{version.removesuffix('.dev0')} (unreleased)"
    assert lines[first + 1] == "-" * len(heading)
    # No other file states the version (setup.py, __init__.py, ...).
    for path in list((ROOT / "src").rglob("*.py")) + [ROOT / "setup.py", ROOT / "setup.cfg"]:
        if path.exists():
            assert "__version__" not in path.read_text(), path


def test_the_metadata_and_the_readme_claim_the_pythons_that_are_tested():
    pyproject = (ROOT / "pyproject.toml").read_text()
    classified = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', pyproject)
    readme = " ".join((ROOT / "README.rst").read_text().split())
    tested = re.search(r"tested here on Python ([\d., and]+?) with", readme).group(1)
    # What CI runs: this machine's 3.11, and each Debian release's Python
    # (.ci/debian-python checks the root's python3 is that version).
    ci = (ROOT / ".ci/run").read_text()
    script = (ROOT / ".ci/debian-python").read_text()
    pythons = dict(re.findall(r"^\s+(\w+)\) python=(3\.\d+) ;;$", script, re.M))
    run = ["3.11"] + [pythons[release] for release in
                      re.findall(r"^bash \.ci/debian-python (\w+)$", ci, re.M)]
    assert classified == re.findall(r"3\.\d+", tested) == run == [
        "3.11", "3.13", "3.14"]
    assert 'requires-python = ">=3.11"' in pyproject
    assert "Python 3.11 or newer (and nothing else)" in readme


def test_the_plone_versions_claimed_are_the_ones_the_suites_run():
    # Each constraints-plone*.txt pins one Plone; CI runs the Plone suite on
    # each; the classifiers and the README name exactly those.
    pinned = {}
    for path in sorted(ROOT.glob("constraints-plone*.txt")):
        [version] = re.findall(r"^Plone==(\S+)$", path.read_text(), re.M)
        pinned[path.name] = version
    assert sorted(pinned.values()) == ["6.0.13", "6.1.4", "6.2.2"]
    ci = (ROOT / ".ci/run").read_text()
    assert "./scripts/test" in ci  # constraints-plone.txt, the default
    for name in pinned:
        if name != "constraints-plone.txt":
            version = name[len("constraints-plone-"):-len(".txt")]
            assert "PLONE_CONSTRAINTS=constraints-plone-$version.txt" in ci
            assert re.search(rf"^for version in .*\b{re.escape(version)}\b", ci, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.findall(r'"Framework :: Plone :: (6\.\d)"', pyproject) == sorted(
        {v.rsplit(".", 1)[0] for v in pinned.values()})
    readme = " ".join((ROOT / "README.rst").read_text().split())
    for version in pinned.values():
        assert f"Plone {version}" in readme, version
