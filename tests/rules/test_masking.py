"""Masking (``agentkit.wire.masking``): known secrets and their base64url forms, and every
JWT-shaped string (or its base64url form), are masked in any text; ``install_log_filter``
masks what other libraries log before any handler sees it."""

from __future__ import annotations

import json
import logging

import pytest

from agentkit.wire.masking import REDACTOR, Redactor, b64url, install_log_filter, mask
from rules_helpers import make_jwt

JWT = make_jwt("masking-user-0001")


class TestKnownSecrets:
    SECRET = "s3cr3t-signing-key-for-tests"
    TOKEN = "opaque-access-token-0a1b2c3d4e5f6789"

    def redactor(self):
        r = Redactor()
        r.add(self.SECRET, keep=0)
        r.add(self.TOKEN)
        return r

    @pytest.mark.parametrize("template", ["{}", "key={} rest", "Bearer {}", '{{"access_token": "{}"}}', "{0} and {0}",
                                          "prefix{}suffix"])
    def test_a_known_secret_is_masked_in_any_text(self, template):
        for secret in (self.SECRET, self.TOKEN):
            text = self.redactor().redact(template.format(secret))
            assert secret not in text, text
            assert "chars)" in text

    def test_the_base64url_form_of_a_known_secret_is_masked(self):
        r = self.redactor()
        for secret in (self.SECRET, self.TOKEN):
            text = r.redact(f"subprotocol jwt.{b64url(secret)} offered")
            assert b64url(secret) not in text and "base64url of" in text, text

    def test_a_signing_secret_shows_not_even_a_prefix(self):
        text = self.redactor().redact(f"secret={self.SECRET}")
        assert self.SECRET[:4] not in text.split("=", 1)[1]
        assert text == f"secret={mask(self.SECRET, keep=0)}"

    def test_a_token_shows_a_prefix_and_suffix_to_tell_two_apart(self):
        text = self.redactor().redact(self.TOKEN)
        assert text.startswith(self.TOKEN[:4]) and self.TOKEN[-4:] in text and str(len(self.TOKEN)) in text

    def test_the_surrounding_text_is_kept(self):
        assert self.redactor().redact(f"before {self.TOKEN} after").startswith("before ")
        assert self.redactor().redact(f"before {self.TOKEN} after").endswith(" after")

    def test_short_values_are_not_secrets(self):
        r = Redactor()
        r.add("abc")
        assert r.redact("abc def") == "abc def"

    def test_text_without_secrets_and_non_strings_are_unchanged(self):
        r = self.redactor()
        assert r.redact("nothing to hide here") == "nothing to hide here"
        assert r.redact(42) == 42 and r.redact(None) is None and r.redact("") == ""

    def test_json_data_is_redacted_everywhere(self):
        data = {"token": self.TOKEN, "nested": [{"k": f"Bearer {self.TOKEN}"}], self.SECRET: 1, "n": 3}
        clean = self.redactor().redact_data(data)
        assert self.TOKEN not in json.dumps(clean) and self.SECRET not in json.dumps(clean)
        assert clean["n"] == 3 and data["token"] == self.TOKEN  # a copy

    def test_a_longer_token_holding_a_secret_is_masked_whole(self):
        r = Redactor()
        r.add("inner-secret")
        outer = "outer-inner-secret-token-xyz-0123456789"
        r.add(outer)
        assert r.redact(f"t={outer}") == f"t={mask(outer)}"


class TestJwtShapes:
    def test_a_jwt_is_masked_though_nobody_registered_it(self):
        text = Redactor().redact(f"Authorization: Bearer {JWT}")
        assert JWT not in text
        assert JWT.split(".")[1] not in text  # the payload (the user's claims) is gone too
        assert text.startswith("Authorization: Bearer eyJ")

    def test_a_jwt_without_signature_is_masked(self):
        unsigned = JWT.rsplit(".", 1)[0] + "."
        assert unsigned.split(".")[1] not in Redactor().redact(f"token {unsigned}")

    def test_the_base64url_form_of_a_jwt_is_masked_though_nobody_registered_it(self):
        carried = b64url(JWT)
        assert carried.startswith("ZXlK")
        text = Redactor().redact(f"offered: jwt-auth, jwt.{carried}")
        assert carried not in text and carried[10:40] not in text and "base64url token" in text

    def test_several_tokens_in_one_text_are_all_masked(self):
        other = make_jwt("someone-else-0002")
        text = Redactor().redact(f"{JWT} then {other} then {b64url(other)}")
        for token in (JWT, other, b64url(other)):
            assert token not in text


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def websocket_log():
    """What a handler on websocket-client's logger sees, with the kit's log filter installed."""
    install_log_filter()
    logger = logging.getLogger("websocket")
    capture = _Capture()
    logger.addHandler(capture)
    try:
        yield logger, capture
    finally:
        logger.removeHandler(capture)


class TestLogFilter:
    TOKEN = "opaque-ws-token-9b8a7c6d5e4f3a2b1c"

    def test_a_known_token_in_another_library_s_log_is_masked_before_any_handler(self, websocket_log):
        logger, capture = websocket_log
        REDACTOR.add(self.TOKEN)
        logger.error(f"Invalid subprotocol: {['jwt-auth', f'jwt.{self.TOKEN}']}")
        [record] = capture.records
        assert self.TOKEN not in record.getMessage() and self.TOKEN not in capture.lines[0]
        assert "Invalid subprotocol" in capture.lines[0]

    def test_a_token_passed_as_a_log_argument_is_masked(self, websocket_log):
        logger, capture = websocket_log
        REDACTOR.add(self.TOKEN)
        logger.error("Invalid subprotocol: %s", self.TOKEN)
        assert self.TOKEN not in capture.lines[0] and "Invalid subprotocol: " in capture.lines[0]

    def test_an_unregistered_jwt_and_its_base64url_form_are_masked_in_logs(self, websocket_log):
        logger, capture = websocket_log
        token = make_jwt("never-registered-0003")
        logger.warning(f"Invalid subprotocol: ['jwt.{token}', 'jwt.{b64url(token)}']")
        assert token not in capture.lines[0] and b64url(token) not in capture.lines[0]

    def test_a_token_in_a_logged_exception_is_masked(self, websocket_log):
        logger, capture = websocket_log
        REDACTOR.add(self.TOKEN)
        try:
            raise ConnectionError(f"Handshake status 403 Forbidden, offered jwt.{self.TOKEN}")
        except ConnectionError:
            logger.exception("handshake failed")
        assert "handshake failed" in capture.lines[0]
        assert self.TOKEN not in capture.lines[0], f"the token shows in the logged traceback:\n{capture.lines[0]}"

    def test_installing_twice_masks_once(self, websocket_log):
        logger, capture = websocket_log
        install_log_filter()
        REDACTOR.add(self.TOKEN)
        logger.error("t=%s", self.TOKEN)
        assert capture.lines[0].endswith(f"t={mask(self.TOKEN)}")
