"""Is every file of the package's source tree in the built wheel and the
sdist? Used by .ci/wheel-check; tests/test_packaging.py checks it on
made-up archives.

    python .ci/wheel_contents.py TREE DIST    # exit 1 naming what is missing
"""

import pathlib
import sys
import tarfile
import zipfile


def package_files(tree):
    """The files under ``tree``/src that belong in a distribution, as
    paths relative to src/."""
    src = pathlib.Path(tree) / "src"
    return sorted(str(path.relative_to(src)).replace("\\", "/")
                  for path in src.rglob("*")
                  if path.is_file() and not any(part.endswith(".egg-info") or
                                                part == "__pycache__"
                                                for part in path.parts)
                  and path.suffix != ".pyc")


def missing(tree, wheel_path, sdist_path):
    """(missing from the wheel, missing from the sdist)."""
    wanted = package_files(tree)
    with zipfile.ZipFile(wheel_path) as wheel:
        in_wheel = set(wheel.namelist())
    with tarfile.open(sdist_path) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    return ([name for name in wanted if name not in in_wheel],
            [name for name in wanted if f"src/{name}" not in in_sdist])


def main(tree, dist):
    dist = pathlib.Path(dist)
    wanted = package_files(tree)
    from_wheel, from_sdist = missing(tree, next(dist.glob("*.whl")),
                                     next(dist.glob("*.tar.gz")))
    kinds = sorted({pathlib.PurePath(name).suffix or name for name in wanted})
    print(f"{len(wanted)} files under src/ ({', '.join(kinds)}); missing from the "
          f"wheel: {from_wheel or 'none'}; from the sdist: {from_sdist or 'none'}")
    return 1 if from_wheel or from_sdist else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
