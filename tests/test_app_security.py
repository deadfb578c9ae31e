"""Serving rules: login when credentials are set, no file access beyond Gradio's own cache (not the
database, not run files, not the data folder, not the system), uploads capped."""

from __future__ import annotations

import httpx
import pytest

from app.testing import running_app


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("secure"), auth=(("ann", "s3cret"),), max_upload_mb=1) as s:
        yield s


def test_login_required(srv):
    from gradio_client import Client

    r = httpx.get(srv.url.rstrip("/") + "/config", timeout=10)
    assert r.status_code in (401, 403)
    c = Client(srv.url, auth=("ann", "s3cret"), verbose=False)
    watch, _ = c.predict(api_name="/current_run")
    assert watch["value"] is None
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        Client(srv.url, auth=("ann", "wrong"), verbose=False)


def test_no_file_access_outside_the_cache(srv):
    s = httpx.Client(base_url=srv.url, timeout=10)
    assert s.post("/login", data={"username": "ann", "password": "s3cret"}).status_code in (200, 302, 303)
    secret = srv.ctx.data_dir / "private.jsonl"
    secret.write_text('{"question": "q", "answer": "a"}\n')
    for path in ("/etc/passwd", str(srv.ctx.storage.runs_dir / "studio.db"), str(secret)):
        r = s.get(f"/gradio_api/file={path}")
        assert r.status_code in (403, 404), (path, r.status_code)


def test_upload_limit(srv):
    s = httpx.Client(base_url=srv.url, timeout=30)
    s.post("/login", data={"username": "ann", "password": "s3cret"})
    r = s.post("/gradio_api/upload", files={"files": ("big.jsonl", b"x" * (2 * 1024 * 1024))})
    assert r.status_code == 413
    small = s.post("/gradio_api/upload", files={"files": ("ok.jsonl", b'{"question": "q", "answer": "a"}\n')})
    assert small.status_code == 200
