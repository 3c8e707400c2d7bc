"""The web app of the two worker systems: one Flask app, a blueprint per part (as flaskr).

- users_api: /users and /tokens (sign up, sign in);
- checks_api: /checks, the uptime checks a user owns (the uptime worker runs them);
- status_page: /status, the page a person opens in a browser;
- reminders_api: /reminders and /messages (the SMS worker sends them).

The Procfile's ``web:`` process serves it with granian on ``0.0.0.0:$PORT``::

    granian --interface wsgi --factory queuing.webapp:create_app

Tests pass ``test_config``: fakeredis clients (``REDIS``, ``RQ_REDIS``), a ``CLOCK`` they
move, ``MAX_CHECKS``, ``TOKEN_SECONDS`` or ``ALLOW_PRIVATE_CHECKS``; anything not given
comes from the settings.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from queuing import checks_api, reminders_api, settings, status_page, store, users_api, web

MAX_BODY_BYTES = 64 * 1024


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    settings.load_env()
    app = web.new_app(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # 413 for more
    config = test_config or {}
    app.config["MAX_CHECKS"] = config.get("MAX_CHECKS") or settings.uptime_max_checks()
    app.config["TOKEN_SECONDS"] = config.get("TOKEN_SECONDS") or settings.token_seconds()
    app.config["ALLOW_PRIVATE_CHECKS"] = config.get("ALLOW_PRIVATE_CHECKS",
                                                    settings.uptime_allow_private())
    settings.phone_region()  # a bad setting stops the server now, not at each request
    settings.timezone()
    store.init_app(app, test_config)
    for blueprint in (users_api.bp, checks_api.bp, status_page.bp, reminders_api.bp):
        app.register_blueprint(blueprint)
    hops = config.get("PROXY_HOPS", settings.proxy_hops())
    if hops:  # the scheme the client used (https: the status page's cookie is Secure)
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    return app
