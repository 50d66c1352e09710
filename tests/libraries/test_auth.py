"""AgentAuth: token variants, the auth service, claims with AssertionEngine, RS256, and
refusals checked through ``Handshake Should Be Refused`` against the reference backend."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import timedelta

import jwt
import pytest
from assertionengine import AssertionOperator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from robot.api import SkipExecution
from robot.api.types import Secret

from AgentAuth import AgentAuth
from agentkit import target as targets
from agentkit.wire import dialect as dialects
from agentkit.wire.masking import reveal
from agentkit.target import Target


@pytest.fixture
def auth():
    return AgentAuth()


@pytest.fixture(scope="module")
def accept_expired(backend_factory):
    return backend_factory(faults=["accept-expired"])


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path_factory.mktemp("keys")
    private = folder / "private.pem"
    public = folder / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


# --- creating tokens ---------------------------------------------------------------
def test_test_token_is_a_secret_with_the_protocol_claims(auth, backend):
    token = auth.create_test_token("alice", secret=backend.jwt_secret, permissions=["chat"],
                                   lifetime=timedelta(minutes=10))
    assert isinstance(token, Secret)
    claims = jwt.decode(reveal(token), backend.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@e2e.test"
    assert claims["type"] == "access"
    assert claims["permissions"] == ["chat"]
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 5


def test_test_token_signs_with_the_resolved_targets_secret(auth, backend):
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url, jwt_secret=backend.jwt_secret))
    token = auth.create_test_token("carol", email="carol@example.com")
    claims = auth.decode_token(token)  # verifies with the target's secret
    assert claims["email"] == "carol@example.com"


def test_test_token_without_any_secret_names_what_is_missing(auth, backend):
    # No target resolved would resolve one on first use (the local one, which has a secret): a
    # target that only has a simulation key is where no secret can be found.
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url, simulation_key="k" * 24))
    with pytest.raises(ValueError, match=r"^No JWT secret: pass secret=\.\.\. \(a Secret\) or resolve a target whose "
                                         r"E2E_JWT_SECRET is set\.$"):
        auth.create_test_token("alice")


def test_empty_user_id_is_refused(auth):
    with pytest.raises(ValueError, match="user_id must be a non-empty string"):
        auth.create_test_token("", secret="x" * 32)


def test_unsupported_algorithm_is_named(auth):
    with pytest.raises(ValueError, match=r"Algorithm 'HS999' is not supported: expected one of HS256, .*RS256"):
        auth.create_test_token("alice", algorithm="HS999", secret="x" * 32)


def test_expired_token_has_exp_in_the_past(auth):
    token = auth.create_expired_token("mallory", expired_for=timedelta(minutes=2), secret="s" * 32)
    claims = jwt.decode(reveal(token), options={"verify_signature": False})
    assert 100 <= time.time() - claims["exp"] <= 140


def test_wrongly_signed_token_does_not_verify_with_the_real_secret(auth, backend):
    token = auth.create_wrongly_signed_token("mallory")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(reveal(token), backend.jwt_secret, algorithms=["HS256"])
    assert jwt.decode(reveal(token), options={"verify_signature": False})["sub"] == "mallory"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "bad-base64"])
def test_malformed_tokens_do_not_verify(auth, kind):
    with pytest.raises(jwt.PyJWTError):
        jwt.decode(reveal(auth.create_malformed_token(kind)), "s" * 32, algorithms=["HS256"])


def test_none_alg_token_is_unsigned(auth):
    token = reveal(auth.create_malformed_token("none-alg"))
    assert jwt.get_unverified_header(token)["alg"] == "none"
    assert token.endswith(".")


def test_unknown_malformed_kind_lists_the_known_ones(auth):
    with pytest.raises(ValueError, match=r"kind 'weird' is not known: expected one of garbage, truncated, "
                                         r"bad-base64, none-alg"):
        auth.create_malformed_token("weird")


def test_token_without_claims_lacks_exactly_those(auth):
    token = auth.create_token_without_claims("mallory", "sub", "exp", secret="s" * 32)
    claims = jwt.decode(reveal(token), options={"verify_signature": False})
    assert "sub" not in claims and "exp" not in claims
    assert claims["type"] == "access"


def test_token_without_claims_needs_a_known_claim(auth):
    with pytest.raises(ValueError, match=r"Name at least one claim"):
        auth.create_token_without_claims("mallory", secret="s" * 32)
    with pytest.raises(ValueError, match=r"Claim\(s\) \['aud'\] are not in a test token: expected some of "):
        auth.create_token_without_claims("mallory", "aud", secret="s" * 32)


# --- RS256 -------------------------------------------------------------------------
def test_rs256_token_from_a_key_file_verifies_with_the_public_key(auth, rsa_keys):
    private, public = rsa_keys
    token = auth.create_test_token("rita", algorithm="RS256", key_file=private)
    assert jwt.get_unverified_header(reveal(token))["alg"] == "RS256"
    claims = auth.decode_token(token, algorithm="RS256", key_file=public)
    assert claims["sub"] == "rita"


def test_rs256_without_a_key_file_is_refused(auth):
    with pytest.raises(ValueError, match="RS256 needs a private key file, got none"):
        auth.create_test_token("rita", algorithm="RS256")


def test_unreadable_key_file_is_named(auth, tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=rf"Key file '{missing}' cannot be read: No such file or directory"):
        auth.create_test_token("rita", algorithm="RS256", key_file=str(missing))


def test_key_file_that_is_not_a_key_is_named(auth, tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a key", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"Cannot sign a RS256 token with key file '{bogus}'"):
        auth.create_test_token("rita", algorithm="RS256", key_file=str(bogus))


def test_decode_with_unreadable_public_key_is_named(auth, rsa_keys, tmp_path):
    token = auth.create_test_token("rita", algorithm="RS256", key_file=rsa_keys[0])
    missing = tmp_path / "public-missing.pem"
    with pytest.raises(ValueError, match=rf"Key file '{missing}' cannot be read"):
        auth.decode_token(token, algorithm="RS256", key_file=str(missing))
    with pytest.raises(ValueError, match="RS256 verification needs a public key_file"):
        auth.decode_token(token, algorithm="RS256")


# --- decoding and claims ---------------------------------------------------------------
def test_decode_token_rejects_a_wrong_secret_and_expiry(auth, backend):
    good = auth.create_test_token("alice", secret=backend.jwt_secret)
    with pytest.raises(AssertionError, match=r"Token .*\(\d+ chars\) is not valid: Signature verification failed"):
        auth.decode_token(good, secret="another-secret-of-sufficient-length!!")
    expired = auth.create_expired_token("alice", secret=backend.jwt_secret)
    with pytest.raises(AssertionError, match="is not valid: Signature has expired"):
        auth.decode_token(expired, secret=backend.jwt_secret)
    assert auth.decode_token(expired, verify=False)["sub"] == "alice"


def test_decode_token_requires_sub(auth):
    token = auth.create_token_without_claims("x", "sub", secret="s" * 32)
    with pytest.raises(AssertionError, match="""is not valid: Token is missing the "sub" claim"""):
        auth.decode_token(token, secret="s" * 32)


def test_get_token_claim_with_assertion_operators(auth):
    token = auth.create_test_token("alice", secret="s" * 32, permissions=["chat", "tools"])
    assert auth.get_token_claim(token, "sub") == "alice"
    assert auth.get_token_claim(token, "sub", AssertionOperator["=="], "alice") == "alice"
    assert auth.get_token_claim(token, "email", AssertionOperator["^="], "alice@") == "alice@e2e.test"
    assert auth.get_token_claim(token, "permissions", AssertionOperator["contains"], "tools") == ["chat", "tools"]
    exp = auth.get_token_claim(token, "exp", AssertionOperator[">"], str(int(time.time())))
    assert exp > time.time()


def test_get_token_claim_failures_name_the_claim_and_value(auth):
    token = auth.create_test_token("alice", secret="s" * 32)
    with pytest.raises(AssertionError, match=r"Claim 'sub' 'alice' \(str\) should be 'bob' \(str\)"):
        auth.get_token_claim(token, "sub", AssertionOperator["=="], "bob")
    with pytest.raises(AssertionError, match=r"Token has no claim 'role'; it has \['email', 'exp', 'iat', 'jti', "
                                             r"'sub', 'type'\]"):
        auth.get_token_claim(token, "role")


def test_secrets_should_be_equal_never_shows_either(auth):
    auth.secrets_should_be_equal(Secret("same-value"), "same-value")
    with pytest.raises(AssertionError) as err:
        auth.secrets_should_be_equal(Secret("first-secret-value"), "second-secret-value")
    assert "Secrets differ" in str(err.value)
    assert "first-secret-value" not in str(err.value) and "second-secret-value" not in str(err.value)


def test_tokens_are_never_logged(auth, backend, caplog):
    caplog.set_level(logging.DEBUG)
    token = auth.create_test_token("alice", secret=backend.jwt_secret)
    fetched = auth.get_token_from_auth_service("alice@example.com", auth_url=backend.url,
                                               simulation_key=backend.simulation_key)
    auth.decode_token(token, secret=backend.jwt_secret)
    assert "Created token for alice" in caplog.text  # the log was captured
    for value in (reveal(token), reveal(fetched), backend.jwt_secret, backend.simulation_key):
        assert value not in caplog.text


# --- the auth service ------------------------------------------------------------------
def test_token_from_auth_service_is_accepted_by_the_websocket(auth, sessions, backend):
    token = auth.get_token_from_auth_service("qa@example.com", name="QA", auth_url=backend.url,
                                             simulation_key=Secret(backend.simulation_key))
    claims = auth.decode_token(token, secret=backend.jwt_secret)
    assert claims["email"] == "qa@example.com" and claims["sub"].startswith("user_")
    sessions.connect_to_agent_websocket(token, url=backend.ws_url, alias="qa")
    assert sessions.get_connection_info("qa")["user_id"] == claims["sub"]


def test_auth_service_uses_the_targets_url_and_key(auth, backend):
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url,
                               simulation_key=backend.simulation_key))
    token = auth.get_token_from_auth_service("target@example.com")
    assert auth.get_token_claim(token, "email") == "target@example.com"


def test_wrong_simulation_key_is_refused(auth, backend):
    with pytest.raises(AssertionError, match=r"Expected 200 with an access token from http://127\.0\.0\.1:\d+"
                                             r"/auth/e2e/test-auth, got HTTP 401: .*invalid or missing simulation key"):
        auth.get_token_from_auth_service("qa@example.com", auth_url=backend.url, simulation_key="wrong-key")
    assert auth.auth_service_should_refuse_simulation_key("wrong-key", auth_url=backend.url) == 401
    assert auth.auth_service_should_refuse_simulation_key(None, auth_url=backend.url) == 401


def test_accepted_simulation_key_fails_the_refusal_check(auth, backend):
    with pytest.raises(AssertionError, match=r"refuse the simulation key .* with HTTP 401/403, got HTTP 200: "
                                             r"the key was ACCEPTED and a token issued"):
        auth.auth_service_should_refuse_simulation_key(backend.simulation_key, auth_url=backend.url)


def test_auth_service_without_url_or_key_names_the_missing_setting(auth, backend):
    # A target without an auth URL has no auth service: the keyword skips, saying why (a target is
    # resolved on first use, so "no target" is no longer a case of its own).
    targets.set_current(Target("staging", backend.url, backend.ws_url, None, jwt_secret=backend.jwt_secret))
    with pytest.raises(SkipExecution, match=r"^target 'staging' has no auth service \(E2E_AUTH_URL is not set\)$"):
        auth.get_token_from_auth_service("qa@example.com")
    targets.set_current(None)
    with pytest.raises(ValueError, match="No simulation key: pass simulation_key=... or set E2E_OAUTH_SIMULATION_KEY"):
        auth.get_token_from_auth_service("qa@example.com", auth_url=backend.url)


def test_unreachable_auth_service_is_named(auth, backend):
    with pytest.raises(AssertionError, match=r"^POST http://127\.0\.0\.1:9/auth/e2e/test-auth \(the auth service's "
                                             r"test-auth endpoint\): cannot connect to 127\.0\.0\.1:9 \(connection "
                                             r"refused: nothing listens on that port\)\."):
        auth.get_token_from_auth_service("qa@example.com", auth_url="http://127.0.0.1:9", simulation_key="k",
                                         timeout=timedelta(seconds=2))


# --- the handshake: refused and accepted tokens -----------------------------------------
@pytest.mark.parametrize("variant", ["expired", "wrong-signature", "garbage", "truncated", "bad-base64", "none-alg",
                                     "no-sub", "no-exp", "no-token"])
def test_bad_tokens_are_refused_with_403(auth, sessions, backend, variant):
    secret = backend.jwt_secret
    token = {
        "expired": lambda: auth.create_expired_token("mallory", secret=secret),
        "wrong-signature": lambda: auth.create_wrongly_signed_token("mallory"),
        "no-sub": lambda: auth.create_token_without_claims("mallory", "sub", secret=secret),
        "no-exp": lambda: auth.create_token_without_claims("mallory", "exp", secret=secret),
        "no-token": lambda: None,
    }.get(variant, lambda: auth.create_malformed_token(variant))()
    assert sessions.handshake_should_be_refused(token, url=backend.ws_url) == "refused with HTTP 403"


@pytest.mark.parametrize("mode", ["bearer", "query"])
def test_bad_token_is_refused_in_every_auth_transport(auth, sessions, backend, mode):
    token = auth.create_expired_token("mallory", secret=backend.jwt_secret)
    assert sessions.handshake_should_be_refused(token, url=backend.ws_url, auth=mode) == "refused with HTTP 403"


def test_valid_token_fails_the_refusal_check(auth, sessions, backend):
    token = auth.create_test_token("alice", secret=backend.jwt_secret)
    with pytest.raises(AssertionError) as err:
        sessions.handshake_should_be_refused(token, url=backend.ws_url)
    text = str(err.value)
    assert text.startswith("Expected the handshake to be REFUSED (HTTP 403), but the server ACCEPTED it: "
                           "system_message (#1) arrived (subprotocol 'jwt-auth'). ")
    assert re.search(r"#1 +system_message +connection_id=ws_\w+ user_id=alice", text)  # the welcome, in the timeline
    assert "A bad token that is accepted is a security failure, not a pass." in text
    assert reveal(token) not in text


def test_accepted_expired_token_fails_the_refusal_check(auth, sessions, accept_expired):
    token = auth.create_expired_token("mallory", secret=accept_expired.jwt_secret)
    with pytest.raises(AssertionError, match=r"(?s)but the server ACCEPTED it: system_message \(#1\) arrived "
                                             r"\(subprotocol 'jwt-auth'\)\. A bad token that is accepted is a security "
                                             r"failure, not a pass\.\n.*#1 +system_message +connection_id=ws_\w+ "
                                             r"user_id=mallory"):
        sessions.handshake_should_be_refused(token, url=accept_expired.ws_url)
    # the fault skips only the expiry check: a wrong signature is still refused there
    assert sessions.handshake_should_be_refused(auth.create_wrongly_signed_token("mallory"),
                                                url=accept_expired.ws_url) == "refused with HTTP 403"


def test_refusal_with_an_unexpected_status_names_both(auth, sessions, backend):
    token = auth.create_expired_token("mallory", secret=backend.jwt_secret)
    with pytest.raises(AssertionError, match=r"Expected the handshake to be refused with HTTP 401, got HTTP 403 "
                                             r"\(ws://127\.0\.0\.1:\d+/ws \(subprotocol auth, token "):
        sessions.handshake_should_be_refused(token, url=backend.ws_url, statuses=[401])


def test_refusal_check_against_nothing_listening_is_not_a_pass(sessions):
    with pytest.raises(AssertionError, match=r"^Expected a refusal \(HTTP 403\), but the handshake could not be "
                                             r"attempted: Cannot connect to ws://127\.0\.0\.1:9/ws"):
        sessions.handshake_should_be_refused("t", url="ws://127.0.0.1:9/ws", timeout=timedelta(seconds=2))


@pytest.mark.parametrize("mode", ["bearer", "query", "subprotocol"])
def test_good_token_connects_in_every_auth_transport(auth, sessions, backend, mode):
    token = auth.create_test_token(f"user-{mode}", secret=backend.jwt_secret)
    alias = sessions.connect_to_agent_websocket(token, url=backend.ws_url, auth=mode, alias=mode)
    info = sessions.get_connection_info(alias)
    assert info["user_id"] == f"user-{mode}"
    assert info["status"] == 101
    assert info["subprotocol"] == ("jwt-auth" if mode == "subprotocol" else None)
    assert info["connection_id"].startswith("ws_")


# --- the policy-close refusal variant (a backend that accepts, then closes 1008) -------------
# What counts as a refusal is the dialect's (connect.refusal): the default wire refuses with HTTP
# 403 only; the netra wire also by an AUTH_FAILED frame and a close with a policy code.
@pytest.fixture
def policy_close_server():
    from websockets.sync.server import serve

    def handler(ws):
        ws.send(json.dumps({"type": "error_message", "error_code": "AUTH_FAILED", "message": "bad token"}))
        ws.close(1008, "auth failed")

    def select(connection, offered):  # select what the client offered first (jwt-auth, or netra's jwt.<t>)
        return offered[0] if offered else None

    server = serve(handler, "127.0.0.1", 0, select_subprotocol=select)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws"
    server.shutdown()
    thread.join(5)


def test_policy_close_before_welcome_counts_as_refusal_when_the_dialect_says_so(sessions, policy_close_server):
    dialects.use("netra")
    assert sessions.handshake_should_be_refused("bad", url=policy_close_server) \
        == "closed with code 1008 (auth failed) before the welcome, after error='AUTH_FAILED'"


def test_policy_close_is_not_a_refusal_by_default(sessions, policy_close_server):
    with pytest.raises(AssertionError) as err:
        sessions.handshake_should_be_refused("bad", url=policy_close_server)
    text = str(err.value)
    assert text.startswith("Expected the handshake to be REFUSED (HTTP 403), but the server closed the connection "
                           "with code 1008, not a refusal code (subprotocol 'jwt-auth'). ")
    assert re.search(r"#1 +error_message .*AUTH_FAILED", text)  # the frame the server sent is shown


def test_policy_close_with_another_code_is_not_a_refusal(sessions, policy_close_server):
    dialects.use("netra")
    with pytest.raises(AssertionError, match=r"^Expected the handshake to be REFUSED \(HTTP 401/403 or a close with "
                                             r"\[4000\] before the welcome\), but the server closed the connection "
                                             r"with code 1008, not a refusal code"):
        sessions.handshake_should_be_refused("bad", url=policy_close_server, close_codes=[4000],
                                             timeout=timedelta(seconds=3))
