"""Where a notification goes: the console (the course's line) or a real SMS through Twilio.

The choice is configuration, not code: with ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``
and ``TWILIO_FROM_NUMBER`` set, :func:`sender_from_env` gives a :class:`TwilioSender`;
otherwise a :class:`ConsoleSender` that prints what the course prints.

Every failure (a phone number we refuse, Twilio saying no, Twilio unreachable) raises
:class:`NotificationError` with a one-line reason, so an RQ job fails with that reason.
Secrets never go into a log line, an exception message or job data: a job carries only
the phone number and the message, and reads the credentials from its environment.

A failed SMS job is tried again, SMS_RETRY_INTERVALS seconds apart (10 s, then a minute,
then 5 minutes: a Twilio outage or a rate limit is often over by then), with RQ's
``Retry``; the delays need RQ's scheduler, which the SMS worker runs
(``105_worker.py``). The job's meta keeps who asked for it (``owner``, for the web app's
``GET /messages/<id>``) and how many retries it has (``retries``, for the worker's line).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

import redis
from rq.job import Job, Retry

from queuing import console, settings
from queuing.constants import OWNER_META, RETRIES_META, SMS_QUEUE
from queuing.jobs import json_queue

# The variables are settings.py's; TWILIO_API_BASE_URL, only for trying things locally,
# sends Twilio's API requests to a stub.
ACCOUNT_SID_ENV = settings.ACCOUNT_SID_ENV
AUTH_TOKEN_ENV = settings.AUTH_TOKEN_ENV
FROM_NUMBER_ENV = settings.FROM_NUMBER_ENV
API_BASE_URL_ENV = settings.API_BASE_URL_ENV

CONSOLE_LINE = "Sending notification to {phone_number}, with message: {message}"

E164 = re.compile(r"\+[1-9]\d{7,14}")
US_10_DIGITS = re.compile(r"[2-9]\d{9}")
SEPARATORS = re.compile(r"[\s().-]")
MAX_MESSAGE_LENGTH = 1600  # Twilio's limit for one message body
# Seconds before each retry of a failed SMS; as many retries as intervals.
SMS_RETRY_INTERVALS = (10, 60, 300)

# Twilio's client logs each request URL, which holds the account SID: keep it quiet.
logging.getLogger("twilio").setLevel(logging.WARNING)


ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


class NotificationError(Exception):
    """A notification was not sent; the message says why in one line, without secrets."""


class TwilioSettingError(settings.ConfigError, NotificationError):
    """A Twilio variable is missing or cannot be right; the message names it, never its
    value. A worker reports it when it starts (exit 2); a job that meets it fails."""


def e164(phone_number: str) -> str:
    """``phone_number`` in E.164 (``+14153518780``), or NotificationError.

    Accepts E.164 and the course's 10-digit US form (``4153518780``); spaces, dots,
    dashes and parentheses are ignored.
    """
    if not isinstance(phone_number, str):
        raise NotificationError(f"Phone number must be text, not {type(phone_number).__name__}")
    compact = SEPARATORS.sub("", phone_number)
    if E164.fullmatch(compact):
        return compact
    if US_10_DIGITS.fullmatch(compact):
        return "+1" + compact
    raise NotificationError(
        f"Invalid phone number {phone_number!r}: use E.164 (+14153518780) "
        "or 10 US digits (4153518780)"
    )


def check_message(message: str) -> str:
    if not isinstance(message, str) or not message.strip():
        raise NotificationError("The message is empty")
    if len(message) > MAX_MESSAGE_LENGTH:
        raise NotificationError(
            f"The message is {len(message)} characters long; at most {MAX_MESSAGE_LENGTH}"
        )
    return message


class Sender(Protocol):
    def send(self, phone_number: str, message: str) -> None:
        """Send ``message`` to ``phone_number`` or raise NotificationError."""


class ConsoleSender:
    """Prints the course's line instead of sending anything (the default)."""

    def send(self, phone_number: str, message: str) -> None:
        e164(phone_number)
        console.log(CONSOLE_LINE.format(phone_number=phone_number, message=message))


class TwilioSender:
    """Sends a real SMS with the official ``twilio`` package.

    ``http_client`` is Twilio's own HTTP boundary (a ``twilio.http.HttpClient``):
    tests pass a fake one, so nothing reaches the network.
    """

    def __init__(self, account_sid: str, auth_token: str, from_number: str,
                 http_client=None) -> None:
        from twilio.rest import Client  # imported here: the console sender does not need it

        self.from_number = e164(from_number)
        self._secrets = [s for s in (account_sid, auth_token) if s]
        self.client = Client(account_sid, auth_token, http_client=http_client)

    def send(self, phone_number: str, message: str) -> None:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        to = e164(phone_number)
        check_message(message)
        try:
            sent = self.client.messages.create(to=to, from_=self.from_number, body=message)
        except TwilioRestException as error:
            # error.msg is Twilio's own sentence; its str() also holds the URL with the SID.
            reason = f"Twilio refused the SMS to {to}: HTTP {error.status}"
            if error.code:
                reason += f", error {error.code}"
            raise NotificationError(self._hide(f"{reason}: {error.msg}")) from None
        except (TwilioException, OSError) as error:  # requests' errors are OSErrors
            raise NotificationError(
                self._hide(f"Twilio could not be reached to send the SMS to {to}: "
                           f"{type(error).__name__}")
            ) from None
        console.log(f"SMS {sent.sid} to {to} queued by Twilio ({sent.status})")

    def _hide(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())  # one line


def twilio_http_client(base_url: str):
    """Twilio's HTTP client, sending every request to ``base_url`` instead of api.twilio.com."""
    from twilio.http.http_client import TwilioHttpClient

    class BaseUrlHttpClient(TwilioHttpClient):
        def request(self, method, url, *args, **kwargs):
            parts = urlsplit(url)
            url = base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
            return super().request(method, url, *args, **kwargs)

    return BaseUrlHttpClient()


def sender_from_env(env: Mapping[str, str] | None = None) -> Sender:
    """A TwilioSender when the three Twilio variables are set (in ``env``, default the
    environment), else a ConsoleSender."""
    twilio = settings.twilio() if env is None else settings.twilio(env)
    given = {ACCOUNT_SID_ENV: twilio.account_sid, AUTH_TOKEN_ENV: twilio.auth_token,
             FROM_NUMBER_ENV: twilio.from_number}
    if not any(given.values()):
        return ConsoleSender()
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise TwilioSettingError(f"Twilio is partly configured: set {', '.join(missing)} too")
    if not ACCOUNT_SID.fullmatch(twilio.account_sid):
        raise TwilioSettingError(f"{ACCOUNT_SID_ENV} is not an account SID "
                                 "(AC and 32 hexadecimal digits, from Twilio's console)")
    if any(character.isspace() for character in twilio.auth_token):
        raise TwilioSettingError(f"{AUTH_TOKEN_ENV} holds spaces: paste the token alone")
    try:
        e164(twilio.from_number)
    except NotificationError:
        raise TwilioSettingError(f"{twilio.from_number_name} is not a phone number: use E.164 "
                                 "(+14153518780) or 10 US digits (4153518780)") from None
    base_url = twilio.api_base_url
    if base_url and urlsplit(base_url).scheme not in ("http", "https"):
        raise TwilioSettingError(f"{API_BASE_URL_ENV} is not an http:// or https:// URL")
    http_client = twilio_http_client(base_url) if base_url else None
    return TwilioSender(twilio.account_sid, twilio.auth_token, twilio.from_number,
                        http_client=http_client)


def check_settings(env: Mapping[str, str] | None = None) -> None:
    """TwilioSettingError now if the Twilio variables cannot work, not at the first SMS.
    A token of the right shape that Twilio refuses is only known when an SMS is sent."""
    sender_from_env(env)


def send_sms(phone_number: str, message: str) -> None:
    """The RQ job: send one SMS with the sender the worker's environment configures."""
    sender_from_env().send(phone_number, message)


def enqueue_sms(connection: redis.Redis, phone_number: str, message: str,
                owner: str = "") -> Job:
    """Queue :func:`send_sms` on the SMS queue (``connection`` in bytes mode, for RQ),
    retried on failure SMS_RETRY_INTERVALS apart; ``owner``: the user who asked for it."""
    retries = len(SMS_RETRY_INTERVALS)
    return json_queue(SMS_QUEUE, connection).enqueue(
        send_sms, phone_number, message,
        retry=Retry(max=retries, interval=list(SMS_RETRY_INTERVALS)),
        meta={OWNER_META: owner, RETRIES_META: retries})
