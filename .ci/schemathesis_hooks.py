"""schemathesis hooks for .ci/schemathesis.

The run authenticates with one token, whose id schemathesis sees in answers and reuses:
a DELETE of it would revoke it (and every token it created), a rotation would end it (at
once, or after a grace period), and every later request would be a 401. Such a DELETE or
rotation goes to a never-issued id instead (a 404, as for any other).

`expiresAt` must be in the future, which JSON Schema cannot say (the document says it in
words, and a past instant is refused with 422 invalid_expires_at): generate date-times
from tomorrow to the year 9999, and move a past one that schemathesis reuses from an
answer (a `createdAt`, say) to tomorrow, so that schema-valid requests are valid requests.

`allowedCidrs` items (format `cidr`) must have no bits set past the prefix, which JSON
Schema cannot say either (a host-bits range is refused with 422 invalid_allowed_cidrs):
generate IPv4 and IPv6 networks with their bits past the prefix cleared.

The leak routes: the run's own token is taken out of any report or public revocation
before it is sent (it cannot be generated, but it is a header value schemathesis knows).
GitLab's Token Revocation API gets its own token from schemathesis.toml.
"""

import ipaddress
import os
from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

_TOMORROW = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1)

schemathesis.openapi.format(
    "date-time",
    st.datetimes(min_value=_TOMORROW, max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda at: at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ),
)


def _network(bits):
    def show(drawn):
        address, prefix = drawn
        network = (address >> (bits - prefix)) << (bits - prefix)
        kind = ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network
        return str(kind((network, prefix)))

    return st.tuples(st.integers(0, 2**bits - 1), st.integers(0, bits)).map(show)


schemathesis.openapi.format("cidr", st.one_of(_network(32), _network(128)))

_OWN_TOKEN_ID = os.environ.get("APITOKEN_SCHEMATHESIS_TOKEN_ID", "").lower()
_OWN_TOKEN = os.environ.get("APITOKEN_SCHEMATHESIS_TOKEN", "")
_NEVER_ISSUED = "00000000-0000-7000-8000-000000000000"


def _in_the_past(value):
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return False
    if at.tzinfo is None:
        return False
    return at <= datetime.now(timezone.utc) + timedelta(minutes=1)


@schemathesis.hook
def before_call(context, case, kwargs):
    # The run's own token is never reported leaked (every later request would be a 401).
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("credentials"), list):
        body["credentials"] = [c for c in body["credentials"] if c != _OWN_TOKEN]
    if isinstance(body, list):
        case.body = [
            entry
            for entry in body
            if not (isinstance(entry, dict) and entry.get("token") == _OWN_TOKEN)
        ]
        body = case.body
    if isinstance(body, dict) and _in_the_past(body.get("expiresAt")):
        body["expiresAt"] = _TOMORROW.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parameters = case.path_parameters or {}
    token_id = parameters.get("tokenId")
    if (
        (case.method.upper() == "DELETE" or case.path.endswith("/rotate"))
        and isinstance(token_id, str)
        and _OWN_TOKEN_ID
        and token_id.lower() == _OWN_TOKEN_ID
    ):
        parameters["tokenId"] = _NEVER_ISSUED
