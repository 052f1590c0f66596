"""The live alert feed (`ws/alerts`) through the real ASGI application with WebsocketCommunicator.

Transactional: alerts are broadcast after commit, and the consumer reads the backlog itself.
The channel layer is the configured one: in-memory, or Redis pub/sub when REDIS_URL is set.
"""

import asyncio
import datetime as dt
import json
import random
import threading

import pytest
import time_machine
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing.websocket import WebsocketCommunicator  # (the package __init__ needs daphne)
from django.conf import settings
from django.db import connections, transaction
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from alerts import realtime
from alerts.consumers import CLOSE_BAD_MESSAGE, CLOSE_SESSION_EXPIRED, CLOSE_SIGNED_OUT
from alerts.models import Alert
from alerts.services import alert_create, alerts_create_many
from churnshield.asgi import application
from core.auth.tokens import issue_tokens

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = "http://localhost:8000"


@pytest.fixture(autouse=True)
def _fresh_channel_layer(settings):
    # Changing the setting drops cached layers, so no test inherits another's groups.
    settings.CHANNEL_LAYERS = dict(settings.CHANNEL_LAYERS)


def run(coroutine_function, *args):
    return async_to_sync(coroutine_function)(*args)


def socket(*, access=None, ticket=None, origin=ORIGIN, session=None, host="localhost:8000"):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    cookies = []
    if access:
        cookies.append(f"{settings.AUTH_COOKIE_ACCESS}={access}")
    if session:
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session}")
    if cookies:
        headers.append((b"cookie", "; ".join(cookies).encode()))
    path = "/ws/alerts" + (f"?ticket={ticket}" if ticket is not None else "")
    return WebsocketCommunicator(application, path, headers=headers)


def access_for(user, seconds=None) -> str:
    token = AccessToken.for_user(user)  # no database write, so usable inside a scenario
    if seconds is not None:
        token.set_exp(lifetime=dt.timedelta(seconds=seconds))
    return str(token)


async def open_live(communicator, last_id=None) -> list[dict]:
    """Connect, resume from `last_id`, return the backlog (the alerts before `ready`)."""
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "resume", "lastId": last_id})
    backlog = []
    while True:
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] == "ready":
            return backlog
        backlog.append(message["alert"])


async def next_json(communicator, timeout: float) -> dict | None:
    """The next JSON message, or None after `timeout` seconds of quiet. (The communicator's own
    receive_* cancel the application on a timeout; this only stops waiting.)"""
    if communicator.future.done():
        communicator.future.result()
    try:
        message = await asyncio.wait_for(communicator.output_queue.get(), timeout)
    except TimeoutError:
        return None
    assert message["type"] == "websocket.send", message
    return json.loads(message["text"])


async def drain(communicator, timeout=0.3) -> list[dict]:
    """Every alert that arrives until the socket is quiet for `timeout` seconds."""
    received = []
    while (message := await next_json(communicator, timeout)) is not None:
        assert message["type"] == "alert"
        received.append(message["alert"])
    return received


async def refused(communicator) -> bool:
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return not connected


create = sync_to_async(alert_create)


# --- refusals --------------------------------------------------------------------------------------


def test_refused_for_a_bad_missing_or_null_origin_and_for_a_foreign_host(csm):
    access = access_for(csm)

    async def scenario():
        assert await refused(socket(access=access, origin="https://evil.example"))
        assert await refused(socket(access=access, origin=None))
        assert await refused(socket(access=access, origin="null"))
        # The server's own origin counts only on a host in ALLOWED_HOSTS.
        assert await refused(socket(access=access, origin="http://evil.example", host="evil.example"))
        assert not await refused(socket(access=access, origin="http://localhost:5173"))  # TRUSTED_ORIGINS
        assert not await refused(socket(access=access, origin="http://testserver", host="testserver"))

    run(scenario)


def test_refused_without_credentials_or_with_an_expired_or_forged_token(csm):
    expired = RefreshToken.for_user(csm).access_token
    expired.set_exp(from_time=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), lifetime=dt.timedelta(minutes=1))
    genuine = access_for(csm)
    header, payload, _signature = genuine.split(".")
    forged_signature = f"{header}.{payload}.{'A' * 43}"
    import jwt as pyjwt

    other_key = pyjwt.encode(
        pyjwt.decode(genuine, options={"verify_signature": False}),
        "a-key-that-is-not-ours-but-long-enough-for-hs256",
        "HS256",
    )
    alg_none = pyjwt.encode(pyjwt.decode(genuine, options={"verify_signature": False}), None, algorithm="none")

    async def scenario():
        assert await refused(socket())
        for bad in (str(expired), forged_signature, other_key, alg_none, "garbage"):
            assert await refused(socket(access=bad)), bad
        assert not await refused(socket(access=genuine))

    run(scenario)


def test_refused_after_a_password_change_revoked_the_token(csm):
    access = access_for(csm)
    csm.set_password("a-new-password-456")
    csm.save()
    assert run(refused, socket(access=access))


def test_ticket_is_single_use_short_lived_and_never_falls_back(csm, api_for):
    def ticket() -> str:
        response = api_for(csm).post("/api/alerts/ws-ticket")
        assert response.status_code == 200
        assert response.json()["expiresIn"] == realtime.TICKET_SECONDS
        return response.json()["ticket"]

    first, second, third = ticket(), ticket(), ticket()
    genuine_cookie = access_for(csm)

    async def scenario():
        assert not await refused(socket(ticket=first))
        assert await refused(socket(ticket=first))  # reused
        assert await refused(socket(ticket="forged-" + second[7:]))  # unknown
        # A bad ticket is a refusal even with a valid cookie beside it.
        assert await refused(socket(ticket=first, access=genuine_cookie))
        assert await refused(socket(ticket=second, origin="https://evil.example"))
        assert await refused(socket(ticket=second))  # the refused attempt spent it

    run(scenario)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=realtime.TICKET_SECONDS + 1)):
        assert run(refused, socket(ticket=third))  # expired


def test_ticket_endpoint_needs_a_sign_in_and_a_trusted_origin_for_the_cookie(csm):
    assert APIClient().post("/api/alerts/ws-ticket").status_code == 401
    browser = APIClient()
    browser.cookies[settings.AUTH_COOKIE_ACCESS] = issue_tokens(csm)["access"]
    assert browser.post("/api/alerts/ws-ticket", HTTP_ORIGIN="https://evil.example").status_code == 403
    response = browser.post("/api/alerts/ws-ticket", HTTP_ORIGIN="http://localhost:5173")
    assert response.status_code == 200 and set(response.json()) == {"ticket", "expiresIn"}


# --- delivery and isolation -------------------------------------------------------------------------


def test_each_user_gets_exactly_the_alerts_they_may_see(csm, other_csm, manager, viewer, make_customer):
    mine, theirs, managers_own = make_customer(owner=csm), make_customer(owner=other_csm), make_customer(owner=manager)

    async def scenario():
        sockets = {user: socket(access=access_for(user)) for user in (csm, other_csm, manager, viewer)}
        for communicator in sockets.values():
            assert await open_live(communicator) == []
        a = await create(title="A", message="m", severity="high", customer_id=mine.pk)
        b = await create(title="B", message="m", customer_id=theirs.pk)
        c = await create(title="C", message="m", severity="critical")  # no customer: managers only
        d = await create(title="D", message="m", customer_id=managers_own.pk)
        got = {user: await drain(communicator) for user, communicator in sockets.items()}
        for communicator in sockets.values():
            await communicator.disconnect()
        return a, b, c, d, got

    a, b, c, d, got = run(scenario)
    assert [x["id"] for x in got[csm]] == [a.pk]
    assert [x["id"] for x in got[other_csm]] == [b.pk]
    # The manager is in their own group and the all-alerts group: still one copy of D.
    assert [x["id"] for x in got[manager]] == [a.pk, b.pk, c.pk, d.pk]
    assert [x["id"] for x in got[viewer]] == [a.pk, b.pk, c.pk, d.pk]


def test_messages_use_the_rest_alert_shape(csm, make_customer, api_for):
    customer = make_customer(owner=csm)

    async def scenario():
        communicator = socket(access=access_for(csm))
        await open_live(communicator)
        await create(title="Payment failed", message="Card declined", severity="critical", customer_id=customer.pk)
        received = await drain(communicator)
        await communicator.disconnect()
        return received

    received = run(scenario)
    assert received == api_for(csm).get("/api/alerts").json()


def test_alerts_are_sent_after_commit_and_never_for_a_rollback(csm, make_customer):
    customer = make_customer(owner=csm)

    def create_in_transaction(commit: bool) -> list[int]:
        try:
            with transaction.atomic():
                alerts_create_many(
                    alerts=[{"title": f"t{i}", "message": "m", "customer_id": customer.pk} for i in (1, 2)]
                )
                ids = list(Alert.objects.order_by("pk").values_list("pk", flat=True))
                if not commit:
                    raise RuntimeError("roll back")
                return ids
        except RuntimeError:
            return []

    async def scenario():
        communicator = socket(access=access_for(csm))
        await open_live(communicator)
        assert await sync_to_async(create_in_transaction)(False) == []
        assert await drain(communicator) == []
        ids = await sync_to_async(create_in_transaction)(True)
        received = await drain(communicator)
        await communicator.disconnect()
        return ids, received

    ids, received = run(scenario)
    assert [a["id"] for a in received] == ids and len(ids) == 2


# --- resume -------------------------------------------------------------------------------------------


def test_resume_sends_the_scoped_backlog_in_id_order_then_live(csm, other_csm, make_customer):
    mine, theirs = make_customer(owner=csm), make_customer(owner=other_csm)
    before = [alert_create(title=f"old {i}", message="m", customer_id=mine.pk) for i in range(3)]
    alert_create(title="not mine", message="m", customer_id=theirs.pk)
    alert_create(title="no customer", message="m")
    Alert.objects.filter(pk=before[0].pk).update(read=True)

    async def scenario():
        first = socket(access=access_for(csm))
        recent = await open_live(first, last_id=None)  # first visit: the newest unread
        await first.disconnect()
        again = socket(access=access_for(csm))
        backlog = await open_live(again, last_id=before[0].pk)
        live = await create(title="live", message="m", customer_id=mine.pk)
        received = await drain(again)
        await again.disconnect()
        return recent, backlog, live, received

    recent, backlog, live, received = run(scenario)
    assert [a["id"] for a in recent] == [before[1].pk, before[2].pk]
    # Late-commit window: ids at or below the last id created in the last minute are re-sent too.
    assert [a["id"] for a in backlog] == [a.pk for a in before]
    assert [a["id"] for a in received] == [live.pk]

    with time_machine.travel(dt.datetime.now(dt.UTC) + realtime.LATE_COMMIT_WINDOW + dt.timedelta(seconds=5)):

        async def later():
            communicator = socket(access=access_for(csm))
            backlog = await open_live(communicator, last_id=before[0].pk)
            await communicator.disconnect()
            return backlog

        assert [a["id"] for a in run(later)] == [before[1].pk, before[2].pk, live.pk]


def test_bad_protocol_messages_close_the_socket(csm):
    async def scenario():
        codes = []
        for text in ('{"type": "resume", "lastId": "7"}', '{"type": "hello"}', "not json", '{"lastId": -1}', "[]"):
            communicator = socket(access=access_for(csm))
            assert (await communicator.connect())[0]
            await communicator.send_to(text_data=text)
            codes.append((await communicator.receive_output(timeout=2)).get("code"))
            await communicator.disconnect()
        # A second resume once the feed is live is refused too (it could skip ids).
        communicator = socket(access=access_for(csm))
        await open_live(communicator, last_id=0)
        await communicator.send_json_to({"type": "resume", "lastId": 0})
        codes.append((await communicator.receive_output(timeout=2)).get("code"))
        await communicator.disconnect()
        return codes

    assert run(scenario) == [CLOSE_BAD_MESSAGE] * 6


def test_backlog_is_bounded_and_pages_by_last_id(csm, make_customer, monkeypatch):
    monkeypatch.setattr(realtime, "BACKLOG_LIMIT", 10)
    customer = make_customer(owner=csm)
    alerts_create_many(alerts=[{"title": f"t{i}", "message": "m", "customer_id": customer.pk} for i in range(25)])
    ids = list(Alert.objects.order_by("pk").values_list("pk", flat=True))
    Alert.objects.update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))  # outside the late window

    async def scenario():
        communicator = socket(access=access_for(csm))
        assert (await communicator.connect())[0]
        pages, last_id = [], 0
        while True:
            await communicator.send_json_to({"type": "resume", "lastId": last_id})
            page = []
            while (message := await communicator.receive_json_from(timeout=5))["type"] == "alert":
                page.append(message["alert"]["id"])
            pages.append((page, message["truncated"]))
            last_id = message["lastId"]
            if not message["truncated"]:
                break
        await communicator.disconnect()
        return pages

    assert run(scenario) == [(ids[:10], True), (ids[10:20], True), (ids[20:], False)]


# --- session end -------------------------------------------------------------------------------------


def test_socket_closes_when_the_access_token_expires(csm):
    access = access_for(csm, seconds=2)

    async def scenario():
        communicator = socket(access=access)
        await open_live(communicator)
        message = await communicator.receive_output(timeout=5)
        return message

    message = run(scenario)
    assert message == {"type": "websocket.close", "code": CLOSE_SESSION_EXPIRED}


def test_ticket_socket_lives_no_longer_than_the_sign_in_that_asked_for_it(csm):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(csm, seconds=2)}")
    ticket = client.post("/api/alerts/ws-ticket").json()["ticket"]

    async def scenario():
        communicator = socket(ticket=ticket)
        await open_live(communicator)
        return await communicator.receive_output(timeout=5)

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_SESSION_EXPIRED}


def test_api_sign_out_closes_the_users_sockets_only(csm, other_csm):
    tokens = issue_tokens(csm)

    async def scenario():
        mine = socket(access=tokens["access"])
        theirs = socket(access=access_for(other_csm))
        await open_live(mine)
        await open_live(theirs)
        browser = APIClient()
        browser.cookies[settings.AUTH_COOKIE_REFRESH] = tokens["refresh"]
        response = await sync_to_async(browser.post)("/api/auth/logout", HTTP_ORIGIN=ORIGIN)
        assert response.status_code == 200
        closed = await mine.receive_output(timeout=2)
        assert await theirs.receive_nothing(timeout=0.3)
        await theirs.disconnect()
        return closed

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


def test_admin_session_is_accepted_and_admin_sign_out_closes_it(csm, make_customer):
    customer = make_customer(owner=csm)
    browser = Client()
    browser.force_login(csm)
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value

    async def scenario():
        assert await refused(socket(session=session, origin="https://evil.example"))
        assert await refused(socket(session="not-a-session"))
        communicator = socket(session=session)
        await open_live(communicator)
        alert = await create(title="A", message="m", customer_id=customer.pk)
        assert [a["id"] for a in await drain(communicator)] == [alert.pk]
        response = await sync_to_async(browser.post)("/admin/logout/")
        assert response.status_code == 200
        return await communicator.receive_output(timeout=2)

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}
    assert run(refused, socket(session=session))  # the session is gone


# --- resume under churn: nothing lost, nothing twice ----------------------------------------------------


def test_2000_alerts_with_5_random_disconnects_lose_nothing_and_repeat_nothing(csm, other_csm, make_customer):
    rng = random.Random(5)
    mine = [make_customer(owner=csm) for _ in range(3)]
    foreign = make_customer(owner=other_csm)
    total = 2000
    created: list[int] = []
    lock = threading.Lock()

    def produce(share: int, seed: int) -> None:
        """One producer thread: single alerts and small batches, some in transactions that stay
        open a moment so ids commit out of order when producers overlap (PostgreSQL)."""
        local = random.Random(seed)
        made = 0
        try:
            while made < share:
                size = min(share - made, local.choice([1, 1, 1, 5, 20]))
                title = f"producer {seed} batch {made}"
                with transaction.atomic():
                    if size == 1:
                        ids = [alert_create(title=title, message="m", customer_id=local.choice(mine).pk).pk]
                    else:
                        rows = [{"title": title, "message": "m", "customer_id": local.choice(mine).pk}] * size
                        alerts_create_many(alerts=rows)
                        ids = list(Alert.objects.filter(title=title).values_list("pk", flat=True))
                    if local.random() < 0.1:
                        alert_create(title="other portfolio", message="m", customer_id=foreign.pk)
                        threading.Event().wait(0.005)
                with lock:
                    created.extend(ids)
                made += size
        finally:
            connections.close_all()

    async def client() -> tuple[set[int], list[int]]:
        seen: set[int] = set()
        resent_across = []
        disconnect_at = sorted(rng.sample(range(100, total - 100), 5))
        producers = [
            asyncio.ensure_future(sync_to_async(produce, thread_sensitive=False)(total // 2, seed)) for seed in (1, 2)
        ]
        loop = asyncio.get_running_loop()
        deadline, hard_stop = loop.time() + 60, loop.time() + 600
        connections_made = 0

        def in_time() -> bool:
            # The feed has 60 s after the last alert is written: slow producers (a loaded machine)
            # are not the feed's delay.
            nonlocal deadline
            if not all(p.done() for p in producers):
                deadline = loop.time() + 60
            return loop.time() < min(deadline, hard_stop)

        while in_time():
            communicator = socket(access=access_for(csm))
            connected, _ = await communicator.connect()
            assert connected
            connections_made += 1
            await communicator.send_json_to({"type": "resume", "lastId": max(seen, default=0)})
            this_connection: set[int] = set()
            cut = disconnect_at.pop(0) if disconnect_at else None
            while True:
                assert in_time(), f"missing: {len(set(created) - seen)} of {len(created)}"
                done = all(p.done() for p in producers) and seen >= set(created)
                if done and cut is None:
                    break
                message = await next_json(communicator, 0.2)
                if message is None:
                    continue
                if message["type"] == "ready":
                    if message["truncated"]:
                        await communicator.send_json_to({"type": "resume", "lastId": message["lastId"]})
                    continue
                alert_id = message["alert"]["id"]
                assert alert_id not in this_connection, f"id {alert_id} sent twice on one connection"
                this_connection.add(alert_id)
                if alert_id in seen:
                    resent_across.append(alert_id)  # a late-commit re-send: the client de-duplicates
                seen.add(alert_id)
                if cut is not None and len(seen) >= cut:
                    break
            await communicator.disconnect()
            if cut is None:
                break
            await asyncio.sleep(rng.random() * 0.05)  # alerts keep coming while disconnected
        for producer in producers:
            await producer
        assert connections_made == 6
        return seen, resent_across

    seen, _resent = run(client)
    assert len(created) == total
    assert seen == set(created)  # 0 missing, and nothing from another portfolio


# --- query counts ------------------------------------------------------------------------------------


def test_broadcast_loads_any_number_of_alerts_in_one_query(csm, make_customer, django_assert_num_queries):
    customers = [make_customer(owner=csm) for _ in range(5)]
    with transaction.atomic():  # no broadcast yet: measured below
        alerts_create_many(alerts=[{"title": "t", "message": "m", "customer_id": c.pk} for c in customers * 10])
    ids = list(Alert.objects.values_list("pk", flat=True))
    with django_assert_num_queries(1):
        realtime.broadcast_alerts(ids[:5])
    with django_assert_num_queries(1):
        realtime.broadcast_alerts(ids)


def test_ws_ticket_costs_one_query(csm, api_for, django_assert_max_num_queries):
    client = api_for(csm)
    with django_assert_max_num_queries(1):  # the signed-in user and role
        assert client.post("/api/alerts/ws-ticket").status_code == 200
