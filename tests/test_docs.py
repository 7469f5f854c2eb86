"""The README and changelog render, and document every option."""

import pathlib

import docutils.core
import pytest

from collective.futures.settings import OPTIONS


ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["README.rst", "CHANGES.rst"])
def test_renders_without_warnings(name):
    docutils.core.publish_string(
        (ROOT / name).read_text(), writer="null",
        settings_overrides={"report_level": 2, "halt_level": 2})


def test_readme_documents_every_option_with_its_default():
    readme = (ROOT / "README.rst").read_text()
    for option in OPTIONS:
        default = option.default
        if isinstance(default, bool):
            default = "on" if default else "off"
        elif isinstance(default, float) and default.is_integer():
            default = int(default)
        documented = (f"``{option.name}`` (no default)" if default == "" else
                      f"``{option.name}`` (default ``{default}``)")
        assert documented in readme, option.name
