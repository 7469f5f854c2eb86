"""settings.py: one table of options, one Settings object built from it;
every converter with good and bad values."""

import dataclasses

import pytest

from collective.futures.exceptions import ConfigurationError
from collective.futures.settings import OPTIONS, Settings


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


# every option's converter, good values and bad

GOOD = {
    "max_workers": [("1", 1), ("32", 32), (8, 8)],
    "max_queue": [("0", 0), ("1000", 1000), (5, 5)],
    "process_workers": [("1", 1), (4, 4)],
    "process_max_queue": [("0", 0), ("100", 100)],
    "process_start_method": [("forkserver", "forkserver"), (" spawn ", "spawn")],
    "asyncio_max_concurrency": [("1", 1), ("1000", 1000)],
    "asyncio_max_queue": [("0", 0), ("10000", 10000)],
    "shared_max_entries": [("1", 1), ("1000", 1000)],
    "timeout": [("0.5", 0.5), ("30", 30.0), (2, 2.0)],
    "max_passes": [("2", 2), ("5", 5)],
    "max_streams": [("1", 1), ("64", 64)],
    "stream_threads": [("1", 1), ("8", 8)],
    "descriptor_reserve": [("0", 0), ("256", 256)],
    "watch_hangups": [("false", False), ("on", True)],
    "max_suspended": [("1", 1), ("1000", 1000)],
    "fragments_progressive": [("on", True), ("off", False)],
    "fragment_fallback": [("", ""), ("<em>Not available</em>", "<em>Not available</em>")],
    "overload": [("reject", "reject"), (" WAIT ", "wait")],
    "retry_after": [("1", 1), ("120", 120)],
    "resume_slots": [("auto", "auto"), ("AUTO", "auto"), ("0", 0), ("4", 4)],
    "shutdown_grace": [("0.1", 0.1), ("20", 20.0)],
    "history_interval": [("0.2", 0.2), ("5", 5.0)],
    "metrics_token": [("", ""), ("x" * 16, "x" * 16), (" " + "y" * 20 + " ", "y" * 20)],
    "suspend": [("on", True), ("Off", False), ("yes", True), ("0", False),
                (True, True), (False, False), ("TRUE", True)],
    "task_backend": [("sqlite:tasks.db", "sqlite:tasks.db"),
                     (" sqlite:/var/lib/zope/tasks.db ", "sqlite:/var/lib/zope/tasks.db"),
                     ("redis://:pw@cache:6379/1?prefix=site1:",
                      "redis://:pw@cache:6379/1?prefix=site1:"),
                     ("redis+sentinel://s1:26379,s2:26379/mymaster",
                      "redis+sentinel://s1:26379,s2:26379/mymaster")],
    "task_queues": [("default", "default"), (" default  pdf mail.out ", "default pdf mail.out")],
    "task_consumer": [("on", True), ("off", False)],
    "metrics_registry": [("off", False), ("on", True)],
    "task_concurrency": [("1", 1), ("4", 4)],
    "task_lease": [("300", 300.0), ("0.5", 0.5)],
    "task_timeout": [("3600", 3600.0)],
    "task_attempts": [("1", 1), ("100", 100)],
    "task_backoff": [("2", 2.0), ("0.05", 0.05)],
    "task_poll": [("1", 1.0), ("0.1", 0.1)],
    "task_keep_done": [("604800", 604800.0)],
    "task_keep_dead": [("2592000", 2592000.0), ("60", 60.0)],
    "task_secret": [("", ""), ("s" * 32, "s" * 32)],
    "task_url": [("", ""), ("http://127.0.0.1:8080/", "http://127.0.0.1:8080")],
}

BAD = {
    "max_workers": ["0", "-1", "many", "1.5", ""],
    "max_queue": ["-1", "lots", "1e3"],
    "process_workers": ["0", "two"],
    "process_max_queue": ["-1"],
    "process_start_method": ["fork", "thread", ""],
    "asyncio_max_concurrency": ["0"],
    "asyncio_max_queue": ["-5"],
    "shared_max_entries": ["0"],
    "timeout": ["0", "-1", "nan", "inf", "soon"],
    "max_passes": ["1", "0", "x"],
    "max_streams": ["0"],
    "stream_threads": ["0", "-1"],
    "descriptor_reserve": ["-1", "many"],
    "watch_hangups": ["maybe"],
    "max_suspended": ["0"],
    "fragments_progressive": ["later"],
    "fragment_fallback": ["x" * 10001],
    "overload": ["queue", ""],
    "retry_after": ["0", "-1", "5s"],
    "resume_slots": ["-1", "some"],
    "shutdown_grace": ["0", "-3", "inf"],
    "history_interval": ["0", "nan"],
    "metrics_token": ["short", "x" * 15],
    "suspend": ["maybe", "", "2"],
    "task_backend": ["redis://", "sqlite:", "tasks.db", "http://localhost/",
                     "redis+sentinel://s1/master", "redis://h/0?prefix="],
    "task_queues": ["", "Default", "a a", "a/b"],
    "task_consumer": ["sometimes"],
    "metrics_registry": ["default"],
    "task_concurrency": ["0"],
    "task_lease": ["0", "-1"],
    "task_timeout": ["0"],
    "task_attempts": ["0", "101"],
    "task_backoff": ["0", "nan"],
    "task_poll": ["0"],
    "task_keep_done": ["-1"],
    "task_keep_dead": ["-1", "a month"],
    "task_secret": ["s" * 31],
    "task_url": ["https://example.org", "http://", "127.0.0.1:8080"],
}


def test_every_option_has_converter_tests():
    # A new option without good and bad values here fails this test.
    names = {option.name for option in OPTIONS}
    assert names == set(GOOD) == set(BAD)


def test_every_default_is_a_good_value():
    for option in OPTIONS:
        assert option.convert(option.default) == option.default, option.name
        assert option.doc, option.name


@pytest.mark.parametrize("key, raw, value", [
    (key, raw, value) for key, pairs in GOOD.items() for raw, value in pairs])
def test_good_values(key, raw, value):
    settings = Settings.from_mapping({key: raw})
    assert getattr(settings, key) == value
    assert type(getattr(settings, key)) is type(value)


@pytest.mark.parametrize("key, raw", [
    (key, raw) for key, raws in BAD.items() for raw in raws])
def test_bad_values_are_refused_naming_key_and_value(key, raw):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_mapping({key: raw})
    message = str(info.value)
    assert message.startswith("<product-config collective.futures>: bad value")
    assert repr(key) in message
    if key in ("task_secret", "metrics_token"):
        # A secret is named, never shown, even a bad one.
        assert "(not shown: a secret)" in message and raw.strip() not in message
    else:
        assert repr(raw) in message


def test_fork_is_refused_saying_why():
    with pytest.raises(ConfigurationError, match="fork is unsafe .* use "
                                                 "forkserver or spawn"):
        Settings.from_mapping({"process_start_method": "fork"})


# custom executors

def test_custom_executors_are_kept_sorted_by_name():
    settings = Settings.from_mapping({
        "executor.gpu": "my.pkg:make_gpu", "executor.db": "my.pkg.pools.make_db"})
    assert settings.executors == (("db", "my.pkg.pools.make_db"),
                                  ("gpu", "my.pkg:make_gpu"))
    assert settings.executor_names == ("threads", "processes", "asyncio",
                                       "db", "gpu")


@pytest.mark.parametrize("name", ["threads", "processes", "asyncio", "streams"])
def test_reserved_executor_names_are_refused(name):
    with pytest.raises(ConfigurationError,
                       match=f"'executor.{name}': '{name}' is a built-in "
                             f"executor or the stream pool"):
        Settings.from_mapping({f"executor.{name}": "my.pkg:factory"})


@pytest.mark.parametrize("key", ["executor.my-pool", "executor.", "executor.1x"])
def test_a_custom_executor_name_must_be_an_identifier(key):
    with pytest.raises(ConfigurationError, match="must be an identifier"):
        Settings.from_mapping({key: "my.pkg:factory"})


@pytest.mark.parametrize("dotted", ["nodots", "my.pkg:", ":factory",
                                    "my.pkg:make-it", "my..pkg:f", "1pkg:f"])
def test_a_custom_executor_factory_must_be_a_dotted_name(dotted):
    with pytest.raises(ConfigurationError, match="must be a dotted name"):
        Settings.from_mapping({"executor.mine": dotted})


def test_settings_are_frozen_and_compare_by_value():
    settings = Settings(timeout=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 6
    assert settings == Settings.from_mapping({"timeout": "5"})
    assert settings != Settings()


def test_environment_variables_name_options_in_upper_case():
    from collective.futures.settings import from_environment
    found = from_environment({"COLLECTIVE_FUTURES_TASK_BACKEND": "redis://r:6379/0",
                              "COLLECTIVE_FUTURES_TASK_CONSUMER": "on",
                              "PATH": "/usr/bin", "COLLECTIVE_FUTUR": "x"})
    assert found == {"task_backend": "redis://r:6379/0", "task_consumer": "on"}
    settings = Settings.from_mapping({"task_consumer": "off", **found})
    assert settings.task_consumer is True  # the environment wins
    with pytest.raises(ConfigurationError, match="COLLECTIVE_FUTURES_TASK_CONSUMERS: "
                                                 "no such option"):
        from_environment({"COLLECTIVE_FUTURES_TASK_CONSUMERS": "on"})
    with pytest.raises(ConfigurationError, match="COLLECTIVE_FUTURES_TASK_LEASE: bad value"):
        from_environment({"COLLECTIVE_FUTURES_TASK_LEASE": "soon"})
