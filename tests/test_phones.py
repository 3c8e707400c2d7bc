"""Phone numbers people type, as E.164 (phones.py)."""

import pytest

from queuing import phones, settings


@pytest.mark.parametrize("typed", ["4153518780", "(415) 351-8780", "1-415-351-8780",
                                   "+1 415 351 8780", "415.351.8780", "+14153518780"])
def test_the_forms_of_one_us_number_are_one_number(typed):
    assert phones.normalise(typed) == "+14153518780"


@pytest.mark.parametrize("typed", ["+999999999999999", "0123456789", "1153518780", "12345",
                                   "", "   ", "call me", "+1415351878012345"])
def test_numbers_no_phone_can_have_are_refused_in_one_line(typed):
    with pytest.raises(phones.InvalidPhone) as refused:
        phones.normalise(typed)
    assert "\n" not in str(refused.value)


def test_other_countries_need_their_code_or_phone_region(monkeypatch):
    assert phones.normalise("+44 20 7946 0958") == "+442079460958"
    monkeypatch.setenv(settings.PHONE_REGION_ENV, "GB")
    assert phones.normalise("020 7946 0958") == "+442079460958"


def test_a_phone_region_that_is_not_one_is_a_config_error(monkeypatch):
    monkeypatch.setenv(settings.PHONE_REGION_ENV, "XX")
    with pytest.raises(settings.ConfigError, match="PHONE_REGION"):
        phones.normalise("4153518780")


@pytest.mark.parametrize("not_text", [None, 4153518780, ["4153518780"]])
def test_anything_but_text_is_refused(not_text):
    with pytest.raises(phones.InvalidPhone):
        phones.normalise(not_text)
