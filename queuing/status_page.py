"""The status page: a person's uptime checks in a browser, rendered by the server.

GET /status shows a sign-in form, or, once signed in, each of the user's checks: up or
down, when it was last checked and its recent outcomes. Jinja escapes everything a user
typed (a check's URL), and the page refreshes itself: no JavaScript, no build step.

Signing in sets the token as the cookie ``token``, scoped to /status: HttpOnly (no
script reads it), Secure over https, and SameSite=Strict, so a browser sends it with no
request that another site starts. That is what stands in for a CSRF token on the two
POST forms (sign in, sign out), with one more line: a POST whose Origin is another site
is refused, so no other site signs a visitor in as someone else either. The
Content-Security-Policy keeps the page out of other sites' frames and its forms posting
only here. The API never reads this cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from queuing import accounts, store, uptime

bp = Blueprint("status_page", __name__, url_prefix="/status",
               template_folder="templates", static_folder="static")
COOKIE, COOKIE_PATH = "token", "/status"
REFRESH_SECONDS = 60
HISTORY_SHOWN = 10
WRONG_LOGIN = "Wrong phone number or password."
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # no-referrer would make the forms' Origin "null"
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Row:
    """One check as the page shows it."""
    id: str
    method: str
    url: str
    state: str | None
    last_checked: float | None
    history: list[dict]


def utc(seconds: float) -> str:
    """A time people read the same wherever the server runs."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(html: str, status: int = 200) -> Response:
    return Response(html, status=status, headers=SECURITY_HEADERS, mimetype="text/html")


def _rows(owner: str) -> list[Row]:
    connection = store.get_redis()
    return [Row(check.id, check.method.upper(), check.full_url,
                uptime.state_of(connection, check.id),
                uptime.last_checked(connection, check.id),
                uptime.log_of(connection, check.id)[:HISTORY_SHOWN])
            for check in uptime.checks_of(connection, owner)]


@bp.before_request
def _refuse_other_sites_posts() -> Response | None:
    origin = request.headers.get("Origin")  # browsers send it with every POST; curl need not
    if request.method == "POST" and origin is not None and urlsplit(origin).netloc != request.host:
        return _page("A form of another site cannot post here.", 403)
    return None


@bp.get("")
def show() -> Response:
    """The signed-in user's checks; the sign-in form for anyone else (an expired token
    included)."""
    token = request.cookies.get(COOKIE)
    user = accounts.user_for_token(store.get_redis(), token, store.now())
    if user is None:
        response = _page(render_template("status_login.html", error=None, phone=""))
        if token is not None:  # expired or signed out elsewhere: the browser forgets it too
            _forget_cookie(response)
        return response
    return _page(render_template("status_page.html", user=user, rows=_rows(user.phone),
                                 now=store.now(), utc=utc, refresh=REFRESH_SECONDS))


@bp.post("/login")
def login() -> Response:
    """Phone and password to a token in a cookie, then back to the page (303: a reload
    does not post the password again). A refusal never says which of the two was wrong."""
    connection = store.get_redis()
    phone = request.form.get("phone", "")
    user = accounts.signed_in(connection, phone, request.form.get("password", ""))
    if user is None:
        html = render_template("status_login.html", error=WRONG_LOGIN, phone=phone)
        return _page(html, 401)
    seconds = current_app.config["TOKEN_SECONDS"]
    token = accounts.issue_token(connection, user, store.now(), seconds)
    response = redirect(url_for("status_page.show"), 303)
    response.set_cookie(COOKIE, token.id, max_age=int(seconds), path=COOKIE_PATH,
                        secure=request.is_secure, httponly=True, samesite="Strict")
    return response


@bp.post("/logout")
def logout() -> Response:
    """Forget the token in Redis as well as in the browser: a copy of it stops working."""
    connection = store.get_redis()
    token = accounts.get_token(connection, request.cookies.get(COOKIE))
    if token is not None:
        accounts.delete_token(connection, token)
    response = redirect(url_for("status_page.show"), 303)
    _forget_cookie(response)
    return response


def _forget_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=request.is_secure, httponly=True,
                           samesite="Strict")
