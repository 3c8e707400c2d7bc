"""Phone numbers people type, as E.164 (``+14153518780``), by libphonenumber's rules.

Users, checks and reminders take numbers from people: ``4153518780``, ``(415) 351-8780``,
``1-415-351-8780`` and ``+1 415 351 8780`` are one number, and a number no phone can have
(``+999999999999999``, ``0123456789``) is refused with one line. A number without a
``+country code`` is read in ``PHONE_REGION`` (default US).

Sending keeps its own, looser rule (senders.e164): the course's job data includes
``4151218782``, which no US phone can have, and the course still "sends" to it.
"""

from __future__ import annotations

import phonenumbers

from queuing import settings


class InvalidPhone(ValueError):
    """Not a phone number anyone can have; the message says so in one line."""


def normalise(text: str, region: str | None = None) -> str:
    """``text`` as E.164, or InvalidPhone. ``region``: PHONE_REGION when not given."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPhone("A phone number is needed")
    shown = " ".join(text.split())[:40]
    try:
        number = phonenumbers.parse(text, region or settings.phone_region())
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"Invalid phone number {shown!r}: use +14153518780, "
                           "or a national number such as 4153518780")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
