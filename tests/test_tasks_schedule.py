"""When periodic tasks fire (collective.futures.tasks.schedule): cron's
fields, @every, and the slot's task id every instance computes alike."""

import pytest

from collective.futures.settings import Settings
from collective.futures.exceptions import ConfigurationError
from collective.futures.tasks.schedule import (
    PeriodicTask, merge_periodic, parse, slot_task_id, utc)


def test_cron_fields_name_the_latest_slot():
    nightly = parse("30 3 * * *")
    assert nightly.latest(utc(2027, 1, 5, 3, 30) + 59) == utc(2027, 1, 5, 3, 30)
    assert nightly.latest(utc(2027, 1, 5, 3, 29)) is None  # a day back: past the hour
    assert nightly.latest(utc(2027, 1, 5, 4, 10)) == utc(2027, 1, 5, 3, 30)
    quarter = parse("*/15 8-9 * * 1-5")  # weekdays, 8:00 to 9:45
    assert quarter.latest(utc(2027, 1, 4, 9, 50)) == utc(2027, 1, 4, 9, 45)  # a Monday
    assert quarter.latest(utc(2027, 1, 3, 9, 50)) is None  # a Sunday
    assert parse("0 12 * * 7").latest(utc(2027, 1, 3, 12, 5)) == utc(2027, 1, 3, 12)  # Sunday as 7
    assert parse("@hourly").latest(utc(2027, 1, 3, 12, 5)) == utc(2027, 1, 3, 12)


def test_with_both_day_fields_either_one_matches():
    # cron's rule: the 1st of the month, or any Monday.
    schedule = parse("0 0 1 * 1")
    assert schedule.latest(utc(2027, 1, 4, 0, 0)) == utc(2027, 1, 4)  # a Monday, the 4th
    assert schedule.latest(utc(2027, 2, 1, 0, 0)) == utc(2027, 2, 1)  # the 1st, a Monday too
    assert schedule.latest(utc(2027, 1, 5, 0, 0)) is None  # a Tuesday, the 5th


def test_every_n_seconds_slots_are_the_multiples_of_n():
    every = parse("@every 60")
    assert every.latest(1_800_000_059.9) == 1_800_000_000.0
    assert parse("@every 2").latest(7.5) == 6.0


@pytest.mark.parametrize("text, message", [
    ("* * * *", "five fields"),
    ("60 * * * *", "not a minute"),
    ("* 24 * * *", "not an hour"),
    ("* * 0 * *", "not a day of month"),
    ("* * * 13 *", "not a month"),
    ("* * * * 8", "not a day of week"),
    ("*/0 * * * *", "not a minute"),
    ("5-1 * * * *", "not a minute"),
    ("x * * * *", "not a minute"),
    ("@every soon", "@every takes a number"),
    ("@every 0", "@every takes 1"),
])
def test_a_bad_schedule_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_every_instance_computes_the_same_task_id_for_a_slot():
    assert slot_task_id("nightly", 1_800_000_000.0) == slot_task_id("nightly", 1_800_000_000)
    assert slot_task_id("nightly", 1_800_000_000.0) != slot_task_id("nightly", 1_800_086_400.0)
    assert slot_task_id("nightly", 1_800_000_000.0) != slot_task_id("weekly", 1_800_000_000.0)
    assert len(slot_task_id("a", 0.0)) == 32


def test_periodic_tasks_are_declared_in_the_product_config():
    settings = Settings.from_mapping({
        "task_periodic.nightly": "0 3 * * * /Plone/@@nightly",
        "task_periodic.tick": "@every 60 /Plone/@@tick?x=1"})
    assert settings.periodic == (("nightly", "0 3 * * *", "/Plone/@@nightly"),
                                 ("tick", "@every 60", "/Plone/@@tick?x=1"))
    for key, value, message in [
            ("task_periodic.x", "61 * * * * /a", "not a minute"),
            ("task_periodic.x", "@every 2 relative", "not a path from the root"),
            ("task_periodic.x y", "@every 2 /a", "name must be"),
            ("task_periodic.x", "/a", "five fields")]:
        with pytest.raises(ConfigurationError, match=message):
            Settings.from_mapping({key: value})


def test_zope_conf_overrides_or_switches_off_a_periodic_task_declared_in_zcml():
    declared = [PeriodicTask("nightly", parse("0 3 * * *"), "/Plone/@@nightly",
                             origin="<futures:periodic name='nightly'>"),
                PeriodicTask("sync", parse("@every 300"), "/Plone/@@sync", queue="bulk"),
                PeriodicTask("noisy", parse("@every 5"), "/Plone/@@noisy")]
    settings = Settings.from_mapping({"task_periodic.nightly": "0 4 * * * /Plone/@@later",
                                      "task_periodic.noisy": "off"})
    assert settings.periodic[1] == ("noisy", "off", "")
    merged, unknown = merge_periodic(declared, settings.periodic)
    assert [(t.name, t.schedule.text, t.path, t.queue) for t in merged] == [
        ("nightly", "0 4 * * *", "/Plone/@@later", None),
        ("sync", "@every 300", "/Plone/@@sync", "bulk")]
    assert unknown == []
    # An override keeps the declared queue.
    merged, _ = merge_periodic(declared, (("sync", "@hourly", "/Plone/@@sync2"),))
    assert [(t.name, t.queue) for t in merged if t.name == "sync"] == [("sync", "bulk")]
    # Switching off what nobody declared: said (the service logs it).
    assert merge_periodic([], (("ghost", "off", ""),)) == ([], ["ghost"])
    # zope.conf's keys arrive in lower case; so does the name of a
    # mapping given in another case.
    settings = Settings.from_mapping({"task_periodic.Noisy": "off"})
    assert merge_periodic(declared, settings.periodic)[1] == []


def test_a_periodic_task_on_an_unknown_queue_stops_the_start(tmp_path):
    from collective.futures.tasks.service import TaskService
    declared = [PeriodicTask("sync", parse("@every 300"), "/Plone/@@sync",
                             queue="bulk", origin="<futures:periodic name='sync'>")]
    with pytest.raises(ConfigurationError, match=r"<futures:periodic name='sync'>: "
                                                 r"queue 'bulk' is not one of"):
        TaskService(Settings.from_mapping({}), tmp_path, declared)
    # The control: with the queue configured, it is taken.
    service = TaskService(Settings.from_mapping({"task_queues": "default bulk"}),
                          tmp_path, declared)
    assert [task.name for task in service.periodic] == ["sync"]


ZCML = """<configure xmlns="http://namespaces.zope.org/zope"
           xmlns:futures="http://namespaces.zope.org/futures">
  {}
</configure>"""


@pytest.fixture
def zcml():
    """Loads a ZCML document, the package's directives known."""
    import collective.futures
    from zope.component.testing import setUp, tearDown
    from zope.configuration import xmlconfig
    setUp()
    context = xmlconfig.file("meta.zcml", collective.futures)
    yield lambda document: xmlconfig.string(document, context=context)
    tearDown()


def test_the_manuals_periodic_zcml_declares_its_two_tasks(zcml):
    from doc_snippets import snippet
    from zope.component import getUtilitiesFor
    from collective.futures.interfaces import IPeriodicTask
    text = snippet("docs/tasks.rst", "periodic-zcml", "xml")
    zcml(text)
    declared = sorted((task for _, task in getUtilitiesFor(IPeriodicTask)),
                      key=lambda task: task.name)
    assert [(t.name, t.schedule.text, t.path, t.queue) for t in declared] == [
        ("nightly-report", "0 3 * * *", "/Plone/@@nightly-report", None),
        ("sync", "@every 300", "/Plone/@@sync-catalogue", "bulk")]


def test_the_periodic_directive_registers_a_named_utility(zcml):
    from zope.component import getUtility
    from collective.futures.interfaces import IPeriodicTask
    zcml(ZCML.format('<futures:periodic name="nightly" schedule="@daily" '
                     'path="/Plone/@@nightly?x=1" queue="bulk" />'))
    task = getUtility(IPeriodicTask, name="nightly")
    assert (task.name, task.schedule.text, task.path, task.queue) == (
        "nightly", "@daily", "/Plone/@@nightly?x=1", "bulk")


@pytest.mark.parametrize("attributes, message", [
    ('name="n" schedule="61 * * * *" path="/a"', "name='n'>: schedule: .*not a minute"),
    ('name="n" schedule="@daily" path="relative"', "name='n'>: path: .*from the root"),
    ('name="n m" schedule="@daily" path="/a"', "name must be"),
    ('name="Nightly" schedule="@daily" path="/a"', "name must be lower-case"),
])
def test_a_bad_periodic_directive_fails_naming_it(zcml, attributes, message):
    from zope.configuration.exceptions import ConfigurationError as ZCMLError
    with pytest.raises(ZCMLError, match=message):
        zcml(ZCML.format(f"<futures:periodic {attributes} />"))


def test_switching_off_an_undeclared_periodic_task_is_logged(tmp_path, caplog):
    from collective.futures.tasks.service import TaskService
    declared = [PeriodicTask("nightly", parse("@daily"), "/Plone/@@nightly")]
    with caplog.at_level("WARNING", logger="collective.futures"):
        service = TaskService(Settings.from_mapping({"task_periodic.nigthly": "off"}),
                              tmp_path, declared)
    assert [task.name for task in service.periodic] == ["nightly"]  # still on
    assert "task_periodic.nigthly off: no periodic task of that name" in caplog.text
