"""When periodic tasks fire (collective.futures.tasks.schedule): cron's
fields, @every, and the slot's task id every instance computes alike."""

import pytest

from collective.futures.settings import Settings
from collective.futures.exceptions import ConfigurationError
from collective.futures.tasks.schedule import parse, slot_task_id, utc


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
