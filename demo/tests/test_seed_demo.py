"""The demo seeder: deterministic, internally consistent, and carrying a learnable churn signal."""

import datetime as dt
import hashlib
import io
import json
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, F, Q

from alerts.models import Alert
from core.exceptions import ConflictError
from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from customers.selectors import risk_level, risk_thresholds
from demo.generator import generate
from integrations.connectors.base import connector_class
from integrations.models import Integration, SyncRun
from integrations.selectors import SECRET_KEY_PATTERN
from integrations.services import sync_now
from interventions.models import Intervention
from playbooks.defaults import DEFAULT_PLAYBOOKS, seed_default_playbooks
from playbooks.models import Playbook, PlaybookExecution
from playbooks.selectors import OUTCOME_DAYS
from predictions.causes import CAUSES
from predictions.models import ChurnPrediction, PortfolioSnapshot
from workspace.reports import MIN_MATURED_PER_GROUP, playbook_effects

AS_OF = dt.date(2025, 6, 30)
AS_OF_DT = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _seed(customers: int, seed: int, **options) -> dict[str, int]:
    return generate(customers=customers, seed=seed, as_of=options.pop("as_of", AS_OF), progress=False, **options)


def _flush() -> None:
    """Remove everything the seeder wrote except users, playbooks and integrations (reused)."""
    PlaybookExecution.objects.all().delete()
    Alert.objects.all().delete()
    PortfolioSnapshot.objects.all().delete()
    for model in (UserSession, SupportTicket, NpsResponse, BillingEvent, ChurnPrediction, Intervention):
        model.objects.all().delete()
    Customer.objects.all().delete()


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _rows(rows) -> list:
    return sorted(rows, key=lambda row: json.dumps(row, default=str))


def _digest() -> str:
    """A hash of the content of every generated table, keyed by e-mail instead of ids."""
    email = dict(Customer.objects.values_list("id", "email"))
    parts: dict[str, list] = {}
    parts["customers"] = [
        [
            c.email,
            c.name,
            c.company,
            c.plan,
            str(c.mrr),
            _iso(c.signup_date),
            _iso(c.last_login),
            c.health_score,
            str(c.churn_risk),
            c.nps_score,
            c.support_tickets,
            c.feature_usage,
            c.is_active,
            _iso(c.churned_at),
            c.external_id,
            c.owner.username,
        ]
        for c in Customer.objects.select_related("owner").order_by("email")
    ]
    sessions = UserSession.objects.values("customer_id").annotate(n=Count("id")).order_by()
    parts["sessions"] = _rows([email[row["customer_id"]], row["n"]] for row in sessions)
    parts["session_rows"] = _rows(
        [email[cid], _iso(start), _iso(end), pages, actions]
        for cid, start, end, pages, actions in UserSession.objects.filter(customer_id__in=list(email)[:20]).values_list(
            "customer_id", "started_at", "ended_at", "pages_viewed", "actions"
        )
    )
    parts["tickets"] = _rows(
        [email[cid], subject, status, priority, _iso(opened), _iso(solved)]
        for cid, subject, status, priority, opened, solved in SupportTicket.objects.values_list(
            "customer_id", "subject", "status", "priority", "opened_at", "solved_at"
        )
    )
    parts["nps"] = _rows(
        [email[cid], score, comment, _iso(at)]
        for cid, score, comment, at in NpsResponse.objects.values_list(
            "customer_id", "score", "comment", "responded_at"
        )
    )
    parts["billing"] = _rows(
        [email[cid], kind, str(amount), str(mrr_after), plan, _iso(at)]
        for cid, kind, amount, mrr_after, plan, at in BillingEvent.objects.values_list(
            "customer_id", "kind", "amount", "mrr_after", "plan_after", "occurred_at"
        )
    )
    parts["predictions"] = _rows(
        [email[cid], str(p), level, causes, _iso(at), health]
        for cid, p, level, causes, at, health in ChurnPrediction.objects.values_list(
            "customer_id", "churn_probability", "risk_level", "top_causes", "prediction_date", "health_score"
        )
    )
    parts["interventions"] = _rows(
        [email[cid], kind, status, priority, _iso(created), _iso(done), outcome, str(revenue)]
        for cid, kind, status, priority, created, done, outcome, revenue in Intervention.objects.values_list(
            "customer_id", "type", "status", "priority", "created_at", "completed_at", "outcome", "revenue_impact"
        )
    )
    parts["alerts"] = _rows(
        [email.get(cid), title, severity, read, _iso(at)]
        for cid, title, severity, read, at in Alert.objects.values_list(
            "customer_id", "title", "severity", "read", "created_at"
        )
    )
    parts["snapshots"] = _rows(
        [str(day), owner, active, risky, round(risk, 3), str(mrr), churned]
        for day, owner, active, risky, risk, mrr, churned in PortfolioSnapshot.objects.values_list(
            "date",
            "owner__username",
            "active_customers",
            "at_risk_customers",
            "risk_sum",
            "mrr_sum",
            "churned_customers",
        )
    )
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.django_db
def test_same_seed_and_as_of_give_identical_data_and_another_seed_does_not():
    _seed(120, 11)
    first = _digest()
    _flush()
    _seed(120, 11)
    assert _digest() == first
    _flush()
    _seed(120, 12)
    assert _digest() != first


def _weekly_sessions_before(ends: dict[int, dt.datetime], days: int = 60) -> dict[int, float]:
    """Sessions per week in the `days` before each customer's end instant."""
    counts: Counter[int] = Counter()
    for cid, started in UserSession.objects.filter(customer_id__in=list(ends)).values_list("customer_id", "started_at"):
        if ends[cid] - dt.timedelta(days=days) <= started < ends[cid]:
            counts[cid] += 1
    return {cid: counts[cid] * 7 / days for cid in ends}


@pytest.mark.django_db
def test_churned_customers_disengage_and_complain_before_churning():
    _seed(400, 5)
    window = dt.timedelta(days=60)
    # Churners with a full session history before churning vs. established retained accounts.
    churned = {
        c.id: c.churned_at
        for c in Customer.objects.filter(
            is_active=False,
            churned_at__gte=AS_OF_DT - dt.timedelta(days=300),
            signup_date__lte=F("churned_at") - 90 * DAY,
        )
    }
    retained = {c.id: AS_OF_DT for c in Customer.objects.filter(is_active=True, signup_date__lte=AS_OF_DT - 90 * DAY)}
    assert len(churned) >= 20 and len(retained) >= 150

    churned_weekly = _weekly_sessions_before(churned)
    retained_weekly = _weekly_sessions_before(retained)
    mean_churned = sum(churned_weekly.values()) / len(churned_weekly)
    mean_retained = sum(retained_weekly.values()) / len(retained_weekly)
    assert mean_churned < 0.7 * mean_retained
    # Imperfect on purpose: some churners look fine, some retained accounts look bad.
    assert max(churned_weekly.values()) > 1.0
    assert min(retained_weekly.values()) < 0.5 * mean_retained

    def trouble(ends: dict[int, dt.datetime]) -> float:
        """Tickets plus failed payments in the 60 days before the end, per customer."""
        total = 0
        for model, field, extra in (
            (SupportTicket, "opened_at", Q()),
            (BillingEvent, "occurred_at", Q(kind="payment_failed")),
        ):
            for cid, at in model.objects.filter(extra, customer_id__in=list(ends)).values_list("customer_id", field):
                total += ends[cid] - window <= at < ends[cid]
        return total / len(ends)

    assert trouble(churned) > 1.5 * trouble(retained)

    # The baseline scores separate them as well: scored just before churning, half the churners
    # are high risk (87 churners here: 49), against under 15 % of the retained.
    high = settings.RISK_HIGH_THRESHOLD
    churners = Customer.objects.filter(is_active=False)
    assert churners.filter(churn_risk__gte=high).count() > 0.5 * churners.count()
    active = Customer.objects.filter(is_active=True)
    assert active.filter(churn_risk__gte=high).count() < 0.15 * active.count()


@pytest.mark.django_db
def test_generated_book_is_consistent():
    counts = _seed(200, 3)
    assert counts["customers"] == Customer.objects.count() == 200
    assert counts["sessions"] == UserSession.objects.count() > 200 * 20
    end = Q(customer__churned_at__isnull=False) & Q(ended_at__gt=F("customer__churned_at"))
    assert not UserSession.objects.filter(
        Q(started_at__lt=F("customer__signup_date"))
        | Q(ended_at__lt=F("started_at"))
        | Q(ended_at__gt=AS_OF_DT)
        | end
        | Q(customer__churned_at__isnull=False, started_at__gt=F("customer__churned_at"))
    ).exists()

    # Churn bookkeeping.
    churned = Customer.objects.filter(is_active=False)
    assert 0.08 * 200 <= churned.count() <= 0.35 * 200
    assert not Customer.objects.filter(
        Q(is_active=False, churned_at__isnull=True) | Q(is_active=True, churned_at__isnull=False)
    ).exists()
    assert not churned.filter(Q(churned_at__lte=F("signup_date")) | Q(churned_at__gt=AS_OF_DT)).exists()
    assert BillingEvent.objects.filter(kind="subscription_cancelled").count() == churned.count()

    # Scores, owners and derived columns.
    assert not Customer.objects.filter(Q(health_score__lt=0) | Q(health_score__gt=100)).exists()
    assert not Customer.objects.filter(Q(churn_risk__lt=0) | Q(churn_risk__gt=1)).exists()
    assert not Customer.objects.exclude(owner__groups__name="csm").exists()
    emails = list(Customer.objects.values_list("email", flat=True))
    assert all(e == e.lower() for e in emails) and len(set(emails)) == len(emails)
    for customer in Customer.objects.all():
        latest_nps = customer.nps_responses.order_by("-responded_at").values_list("score", flat=True).first()
        assert customer.nps_score == latest_nps
        assert customer.support_tickets == customer.tickets.filter(status__in=["open", "pending"]).count()
        assert customer.signup_date <= (customer.last_login or customer.signup_date) <= AS_OF_DT
        assert all(isinstance(value, int) for value in customer.feature_usage.values())
        # The keys the React app's customer card reads (contract example customer1.json).
        assert {"login", "features", "api_calls"} <= set(customer.feature_usage)
        product = [
            customer.feature_usage[key]
            for key in (
                "dashboards",
                "reports",
                "exports",
                "api_calls",
                "integrations",
                "alerts_configured",
                "workflows",
            )
        ]
        assert customer.feature_usage["features"] == round(100 * sum(value > 0 for value in product) / 7)

    # One prediction per customer at as-of matching the customer row; levels follow the thresholds.
    # A churned customer's latest is its last before churn (an hour before), never one at as-of.
    current = ChurnPrediction.objects.filter(prediction_date=AS_OF_DT)
    assert current.count() == Customer.objects.filter(is_active=True).count()
    assert not current.filter(customer__is_active=False).exists()
    for customer in churned:
        latest = customer.predictions.order_by("-prediction_date").first()
        assert latest.prediction_date == customer.churned_at - dt.timedelta(hours=1)
        assert (latest.churn_probability, latest.health_score) == (customer.churn_risk, customer.health_score)
    assert not current.exclude(churn_probability=F("customer__churn_risk")).exists()
    assert not current.exclude(health_score=F("customer__health_score")).exists()
    # Before churn, most churners were not yet at 98-100 % (scored after churn, all of them were).
    assert churned.filter(churn_risk__gte=Decimal("0.98")).count() < churned.count() / 2
    high, medium = settings.RISK_HIGH_THRESHOLD, settings.RISK_MEDIUM_THRESHOLD
    for prediction in ChurnPrediction.objects.all():
        p = float(prediction.churn_probability)
        assert prediction.risk_level == ("high" if p >= high else "medium" if p >= medium else "low")
        assert prediction.model_version == "rules-baseline-1"
        assert prediction.prediction_date <= AS_OF_DT
        causes = prediction.top_causes
        assert len(causes) <= 3
        assert all(c["cause"] in CAUSES and c["factor"] and isinstance(c["value"], str) for c in causes)
        assert [c["impact"] for c in causes] == sorted((c["impact"] for c in causes), reverse=True)

    # Nothing happens after as-of.
    for model, fields in (
        (SupportTicket, ["opened_at", "solved_at"]),
        (NpsResponse, ["responded_at"]),
        (BillingEvent, ["occurred_at"]),
        (Intervention, ["created_at", "completed_at"]),
        (Alert, ["created_at"]),
        (PlaybookExecution, ["started_at", "completed_at"]),
    ):
        for name in fields:
            assert not model.objects.filter(**{f"{name}__gt": AS_OF_DT}).exists(), (model, name)
    assert not SupportTicket.objects.filter(opened_at__lt=F("customer__signup_date")).exists()

    # Interventions: the owner's name, explicit creation times, outcomes only when completed.
    interventions = Intervention.objects.select_related("customer__owner", "created_by")
    assert interventions.exists()
    for intervention in interventions:
        assert intervention.created_by == intervention.customer.owner
        assert intervention.assigned_csm == intervention.customer.owner.get_full_name()
        assert (intervention.status == "completed") == (intervention.outcome is not None)
        assert (intervention.completed_at is not None) == (intervention.status == "completed")
    assert interventions.filter(created_at__lt=AS_OF_DT - 30 * DAY).exists()
    assert Alert.objects.filter(customer__isnull=True).exists()
    assert not Alert.objects.filter(created_at__lt=AS_OF_DT - 14 * DAY).exists()

    # Playbooks, executions, integrations.
    assert Playbook.objects.count() >= 6
    assert all(
        step["type"] in {"create_intervention", "send_email", "notify", "wait", "condition", "create_alert"}
        for playbook in Playbook.objects.all()
        for step in playbook.steps
    )
    running = PlaybookExecution.objects.filter(status="running").values("playbook", "customer").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in running)
    for integration in Integration.objects.all():
        assert any(SECRET_KEY_PATTERN.search(key) for key in integration.config)
        assert any(not SECRET_KEY_PATTERN.search(key) for key in integration.config)
        # Only settings its connector reads: the setup form shows every one, none left over as JSON.
        declared = {setting.key for setting in connector_class(integration.config["provider"]).settings_schema}
        assert set(integration.config) - {"provider"} <= declared, integration.name

    # A year of daily snapshots per CSM; the last day matches the customer rows.
    csms = get_user_model().objects.filter(groups__name="csm").count()
    assert PortfolioSnapshot.objects.count() == 365 * csms
    last = PortfolioSnapshot.objects.filter(date=AS_OF)
    assert sum(row.active_customers for row in last) == Customer.objects.filter(is_active=True).count()
    assert (
        sum(row.at_risk_customers for row in last)
        == Customer.objects.filter(is_active=True, churn_risk__gte=high).count()
    )
    per_day = defaultdict(int)
    for day, active in PortfolioSnapshot.objects.values_list("date", "active_customers"):
        per_day[day] += active
    assert per_day[AS_OF - 364 * DAY] < per_day[AS_OF]  # the book grew over the year


@pytest.mark.django_db
def test_activity_scale_thins_sessions_but_not_scores():
    full = _seed(80, 21)
    risks = dict(Customer.objects.values_list("email", "churn_risk"))
    _flush()
    thin = _seed(80, 21, activity_scale=0.2)
    assert 0.1 * full["sessions"] < thin["sessions"] < 0.3 * full["sessions"]
    # Scores read activity before thinning; only recency is rounded to the day, so they barely move.
    thin_risks = dict(Customer.objects.values_list("email", "churn_risk"))
    assert thin_risks.keys() == risks.keys()
    assert max(abs(thin_risks[email] - risk) for email, risk in risks.items()) < Decimal("0.03")


@pytest.mark.django_db
def test_if_empty_leaves_an_existing_database_untouched(make_customer):
    make_customer()
    out = io.StringIO()
    call_command("seed_demo", "--if-empty", "--customers", "20", "--seed", "1", stdout=out)
    assert "not seeding" in out.getvalue()
    assert Customer.objects.count() == 1
    assert not UserSession.objects.exists()
    assert not get_user_model().objects.filter(username="csm01").exists()


@pytest.mark.django_db
def test_seed_demo_command_seeds_an_empty_database_and_refuses_to_duplicate():
    out = io.StringIO()
    call_command(
        "seed_demo",
        "--if-empty",
        "--customers",
        "30",
        "--seed",
        "4",
        "--as-of",
        "2025-06-30",
        "--activity-scale",
        "0.5",
        stdout=out,
        verbosity=0,
    )
    assert "customers=30" in out.getvalue()
    assert Customer.objects.count() == 30
    users = get_user_model().objects
    assert set(users.filter(groups__name="csm").values_list("username", flat=True)) == {
        "csm01",
        "csm02",
        "csm03",
        "csm04",
    }
    assert users.filter(username__in=["manager1", "manager2"], groups__name="manager").count() == 2
    assert users.filter(username="viewer", groups__name="viewer").exists()
    assert users.filter(username="demo", groups__name="admin", is_superuser=True).exists()
    assert not users.filter(is_staff=False).exists()

    with pytest.raises(CommandError, match="exist already"):
        call_command("seed_demo", "--customers", "30", "--seed", "4", "--as-of", "2025-06-30", verbosity=0)
    assert Customer.objects.count() == 30  # nothing half-written


@pytest.mark.django_db
def test_demo_user_is_idempotent_and_keeps_a_changed_password(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-for-tests")
    out = io.StringIO()
    call_command("demo_user", stdout=out)
    text = out.getvalue()
    assert "/signin" in text and "/admin/" in text and "demo" in text and "demo-pass-for-tests" in text
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_staff and demo.is_superuser and demo.groups.filter(name="admin").exists()
    assert demo.check_password("demo-pass-for-tests")

    demo.set_password("changed-by-the-user-1")
    demo.save()
    call_command("demo_user", stdout=io.StringIO())
    demo.refresh_from_db()
    assert demo.check_password("changed-by-the-user-1")
    assert get_user_model().objects.filter(username="demo").count() == 1

    call_command("demo_user", "--reset-password", stdout=io.StringIO())
    demo.refresh_from_db()
    assert demo.check_password("demo-pass-for-tests")


@pytest.mark.django_db
def test_seeded_data_is_served_by_the_api(api_for):
    _seed(40, 8)
    admin = get_user_model().objects.get(username="demo")
    csm = get_user_model().objects.get(username="csm01")
    api = api_for(admin)
    customers = api.get("/api/customers")
    assert customers.status_code == 200
    integrations = api.get("/api/integrations")
    assert integrations.status_code == 200
    assert "api_key" not in json.dumps(integrations.json())
    assert "signing_secret" not in json.dumps(integrations.json())
    own = api_for(csm).get("/api/customers")
    assert own.status_code == 200


@pytest.mark.django_db
def test_the_demo_tells_the_truth_about_integrations_playbooks_and_alerts(django_capture_on_commit_callbacks):
    """Integrations wired to a provider but honestly not connected; a playbook measured against its
    holdout with enough known outcomes in both groups for an interval; no open alert about a
    customer whose risk is low, after the demo's own scores and after a scoring run."""
    seed_default_playbooks()  # as seed_demo does first: the holdout is drawn at their configured share
    _seed(600, 7)

    for integration in Integration.objects.all():
        assert integration.provider in {"stripe", "hubspot", "zendesk", "segment"}
        assert integration.status == Integration.Status.DISCONNECTED
        assert integration.last_sync_at is None
        assert "no credentials configured" in integration.last_error
        with pytest.raises(ConflictError, match=r"not connected|no pull sync"):
            sync_now(integration_id=integration.pk)
    stripe = Integration.objects.get(name="Stripe")
    with pytest.raises(ConflictError, match="Stripe is not connected: no api_key configured"):
        sync_now(integration_id=stripe.pk)
    assert not SyncRun.objects.exists()

    # Every enrolment is finished (the engine resumes none and e-mails nobody) and none came from a rule.
    executions = PlaybookExecution.objects.filter(started_at__lte=AS_OF_DT)
    history = executions.filter(risk_at_start__isnull=False)
    # The demo runs the default playbooks and adds none of its own beside them (once it added
    # "Product Training / Feature Adoption" next to "Product Training": the same work twice).
    defaults = sorted(document["name"] for document in DEFAULT_PLAYBOOKS)
    assert sorted(Playbook.objects.values_list("name", flat=True)) == defaults
    assert set(executions.values_list("playbook__name", flat=True)) <= set(defaults)
    assert not history.exclude(status__in=["completed", "failed"]).exists()
    assert not executions.filter(trigger="rule").exists()
    assert not history.filter(is_holdout=True).exclude(status="completed").exists()
    manager = get_user_model().objects.get(username="manager1")
    effects = playbook_effects(user=manager, now=AS_OF_DT)
    measured = [effect for effect in effects["rows"] if effect.enough_data]
    assert measured, [(e.name, e.enrolled, e.holdout) for e in effects["rows"]]
    matured = Q(started_at__lte=AS_OF_DT - dt.timedelta(days=OUTCOME_DAYS)) | Q(customer__churned_at__isnull=False)
    churned = Q(customer__churned_at__isnull=False, customer__churned_at__gte=F("started_at"))
    for effect in measured:
        rows = PlaybookExecution.objects.filter(playbook_id=effect.playbook_id)
        for is_holdout, n, lost in (
            (False, effect.enrolled, effect.enrolled_churned),
            (True, effect.holdout, effect.holdout_churned),
        ):
            arm = rows.filter(is_holdout=is_holdout)
            assert arm.filter(matured).count() == n >= MIN_MATURED_PER_GROUP
            assert arm.filter(churned).count() == lost
        low, high = effect.interval
        assert low < effect.averted_points < high
        # The share held out is the one the playbook page shows (the draw keeps its mean).
        configured = Playbook.objects.get(pk=effect.playbook_id).holdout_share
        share = rows.filter(is_holdout=True).count() / rows.count()
        assert abs(share - configured) <= 0.25 * configured, (effect.name, share, configured)
    assert effects["svg"] is not None
    # The report reads churn from the customers: a churned enrolment's customer churned after it began.
    assert not history.filter(customer__churned_at__lt=F("started_at")).exists()

    def open_alerts_about_low_risk(**only) -> list[str]:
        thresholds = risk_thresholds()
        open_alerts = Alert.objects.filter(status="open", customer__isnull=False, **only).select_related("customer")
        return [a.title for a in open_alerts if risk_level(float(a.customer.churn_risk), thresholds) == "low"]

    assert Alert.objects.filter(status="open", customer__isnull=False).exists()
    assert open_alerts_about_low_risk() == []
    with django_capture_on_commit_callbacks(execute=True):
        call_command("score_customers", stdout=io.StringIO())
    # Rescored, a risk alert whose customer fell back to low resolves itself (the scoring write-back).
    assert Alert.objects.filter(source="risk_rise").exists()
    assert open_alerts_about_low_risk(source="risk_rise") == []
