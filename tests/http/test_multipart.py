"""A multipart/form-data body that does not parse is a 400 problem naming the body."""

from __future__ import annotations

import pytest

from tests.assertions import assert_problem


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b'{"name": "x"}'),  # no boundary
        ("multipart/form-data; boundary=zzz", b"garbage"),  # no part
    ],
)
def test_a_broken_multipart_body_is_a_400(client, content_type, body):
    response = client.post("/api/v1/plugins", content=body, headers={"Content-Type": content_type})

    problem = assert_problem(response, 400, "malformed_multipart")
    assert [e["field"] for e in problem["errors"]] == ["body"]
