"""schemathesis hooks for .ci/schemathesis.

`expiresAt` must be in the future, which JSON Schema cannot say (the document says it in
words, and a past instant is refused with 422 invalid_expires_at): generate date-times
from tomorrow to the year 9999, so that schema-valid requests are valid requests.
"""

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
