import pytest

from collective.futures.exceptions import ConfigurationError
from collective.futures.settings import Settings


def test_defaults():
    settings = Settings.from_mapping({})
    assert settings == Settings()
    assert (settings.max_workers, settings.timeout, settings.max_passes,
            settings.suspend) == (32, 30.0, 3, True)


def test_strings_from_zope_conf_are_converted():
    settings = Settings.from_mapping(
        {"max_workers": "8", "timeout": "2.5", "max_passes": "4",
         "suspend": "off"})
    assert settings == Settings(max_workers=8, timeout=2.5, max_passes=4,
                                suspend=False)


def test_unknown_key_is_named():
    with pytest.raises(ConfigurationError, match="unknown key 'max_wrokers'"):
        Settings.from_mapping({"max_wrokers": "8"})


@pytest.mark.parametrize("key, value", [
    ("max_workers", "0"), ("max_workers", "many"), ("timeout", "-1"),
    ("timeout", "nan"), ("max_passes", "1"), ("suspend", "maybe"),
])
def test_bad_value_is_named(key, value):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_mapping({key: value})
    assert repr(key) in str(info.value)
    assert repr(value) in str(info.value)
