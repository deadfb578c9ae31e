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
    secret = srv.ctx.studio.data_dir / "private.jsonl"
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


def test_failed_logins_are_throttled_per_client(srv):
    """Guessing: after a few wrong passwords the client is answered 429 (even with the right one)
    until its wait is over; then the right password works and clears the count."""
    from app.guards import FREE_TRIES

    statuses = []
    for _ in range(FREE_TRIES + 2):
        statuses.append(httpx.post(srv.url.rstrip("/") + "/login", data={"username": "ann", "password": "guess"},
                                   timeout=10).status_code)
    assert set(statuses) <= {400, 429} and statuses[-1] == 429, statuses
    assert statuses.count(400) <= FREE_TRIES
    right = httpx.post(srv.url.rstrip("/") + "/login", data={"username": "ann", "password": "s3cret"}, timeout=10)
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
    import time

    time.sleep(int(right.headers["retry-after"]) + 0.2)
    ok = httpx.post(srv.url.rstrip("/") + "/login", data={"username": "ann", "password": "s3cret"}, timeout=10)
    assert ok.status_code == 200
    again = httpx.post(srv.url.rstrip("/") + "/login", data={"username": "ann", "password": "guess"}, timeout=10)
    assert again.status_code == 400  # the success cleared the count


def test_login_backoff_doubles_and_is_per_client():
    from app.guards import FIRST_WAIT_S, FREE_TRIES, MAX_WAIT_S, LoginThrottle

    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])
    for _ in range(FREE_TRIES):
        assert t.wait_s("a") == 0
        t.failed("a")
    waits = []
    for _ in range(12):
        waits.append(t.wait_s("a"))
        now[0] += waits[-1]
        t.failed("a")
    assert waits[:3] == [FIRST_WAIT_S, 2 * FIRST_WAIT_S, 4 * FIRST_WAIT_S] and max(waits) == MAX_WAIT_S
    assert t.wait_s("b") == 0  # another client is not held up
    t.succeeded("a")
    assert t.wait_s("a") == 0


def test_heartbeat_needs_a_login(srv):
    with httpx.stream("GET", srv.url.rstrip("/") + "/gradio_api/heartbeat/abc123", timeout=10) as r:
        assert r.status_code == 401


def test_cross_origin_posts_are_refused(srv):
    s = httpx.Client(base_url=srv.url, timeout=30)
    s.post("/login", data={"username": "ann", "password": "s3cret"})
    payload = {"files": ("evil.jsonl", b'{"question": "q", "answer": "a"}\n')}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.evil.example"},
                    {"Origin": srv.url.rstrip("/").replace("127.0.0.1", "localhost")}):
        r = s.post("/gradio_api/upload", files=payload, headers=headers)
        assert r.status_code == 403, headers
    same = s.post("/gradio_api/upload", files=payload, headers={"Origin": srv.url.rstrip("/"),
                                                                "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
