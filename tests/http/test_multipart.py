"""A multipart/form-data body that does not parse is a 400 problem naming the body (one
without a boundary in its Content-Type is a 415, refused before it is read)."""

from __future__ import annotations

import pytest

from tests.assertions import assert_problem


@pytest.mark.parametrize("path", ["/api/v1/plugins", "/api/v1/skills/import"])
def test_a_broken_multipart_body_is_a_400(client, path):
    headers = {"Content-Type": "multipart/form-data; boundary=zzz"}
    response = client.post(path, content=b"garbage", headers=headers)

    problem = assert_problem(response, 400, "malformed_multipart")
    assert [e["field"] for e in problem["errors"]] == ["body"]


def test_a_multipart_body_without_a_boundary_is_a_415(client):
    headers = {"Content-Type": "multipart/form-data"}
    response = client.post("/api/v1/plugins", content=b'{"name": "x"}', headers=headers)

    assert_problem(response, 415, "unsupported_media_type")
