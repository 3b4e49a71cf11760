"""The error tree drawn in ``errors.py``'s docstring is the classes' own: each class's parent
and HTTP status, as its class line declares them; messages, types and ``failover`` inherit.

    pytest -m unit          (seconds)
"""

from __future__ import annotations

import re

import pytest

from llm_router_api import errors

pytestmark = pytest.mark.unit

LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>\w+) \((?P<status>\d+|4xx)\)")


def test_every_class_has_the_parent_and_status_the_docstring_draws() -> None:
    parents: list[type[errors.RouterError]] = []
    seen = 0
    for line in (errors.__doc__ or "").splitlines():
        match = LINE.match(line[4:])
        if match is None:
            continue
        depth = len(match["indent"]) // 4
        cls = getattr(errors, match["name"])
        del parents[depth:]
        if parents:
            assert cls.__bases__ == (parents[-1],), match["name"]
        if match["status"] != "4xx":
            assert cls.status == int(match["status"]), match["name"]
        parents.append(cls)
        seen += 1
    assert seen >= 20


def test_what_a_class_line_leaves_out_is_inherited() -> None:
    assert errors.UnknownModel.error_type == "not_found_error"
    assert errors.UnknownModel("m").http_status == 404
    assert errors.RequestTimeout.error_type == errors.ClientError.error_type
    assert errors.UpstreamTruncated().message == "the provider ended the stream early"
    assert errors.UpstreamTruncated.status == 502 and errors.UpstreamTruncated.failover
    assert errors.DeadlineExceeded.status == 504 and not errors.DeadlineExceeded.failover
    assert errors.UpstreamTimeout.failover
    assert errors.HTTPClientError(431, "too large").http_status == 431
    assert errors.RateLimited(retry_after=1.2).headers() == {"Retry-After": "2"}
