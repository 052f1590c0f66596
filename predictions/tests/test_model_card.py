"""The model version page as a model card (predictions/model_card.py, ModelVersionAdmin): every
section shows the figures training stored, an old version without them still renders, the
champion cannot be deleted, and promoting or rolling back is a manager's audited action."""

import datetime as dt
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from customers.models import Customer
from demo.generator import generate
from predictions.ml.features import feature_info
from predictions.model_card import figure, interval, percent
from predictions.models import ChurnPrediction, ModelVersion, ModelVersionChange, PredictionRun
from predictions.services.registry import model_promote, model_train, rules_version
from predictions.services.scoring import score_customers


class Sections(HTMLParser):
    """The text of every table cell, row by row, of each `<section id=...>` of the page."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.text: dict[str, str] = {}
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id", "").startswith("cs-card-"):
            self._section = attrs["id"].removeprefix("cs-card-")
            self.rows[self._section], self.text[self._section] = [], ""
        elif self._section and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []
        elif self._cell is not None and tag == "br":
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._section].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._section:
            self.text[self._section] += data


def page(client: Client, version: ModelVersion) -> tuple[int, str]:
    response = client.get(reverse("admin:predictions_modelversion_change", args=[version.pk]))
    return response.status_code, response.content.decode()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def book(db):
    generate(customers=600, seed=11, as_of=timezone.now().date(), activity_scale=0.5, progress=False)
    return Customer.objects.all()


@pytest.fixture
def trained(book, django_capture_on_commit_callbacks):
    """A trained champion that has scored one batch (so its drift is measured)."""
    version = model_train(seed=0, min_positives=20)
    if version.status != ModelVersion.Status.CHAMPION:
        model_promote(version, "Promoted by hand for the test.")
    with django_capture_on_commit_callbacks(execute=True):
        score_customers()
    version.refresh_from_db()
    return version


@pytest.fixture
def rules_champion(db):
    """The rules baseline in charge (no training: for the tests about who may do what)."""
    version = rules_version()
    model_promote(version, "Cold start for the test.")
    return version


# --- The card ---------------------------------------------------------------------------------


def test_a_manager_reads_every_section_with_the_numbers_training_stored(trained, manager):
    status, html = page(signed_in(manager), trained)
    assert status == 200
    sections = Sections(html)
    assert set(sections.rows) == {
        "facts",
        "blocks",
        "calibration",
        "comparison",
        "thresholds",
        "importance",
        "drift",
        "changes",
    }
    metrics, name = trained.metrics, trained.kind
    assert "not recorded" not in html
    assert '"calibration_bins"' not in html and '"threshold_table"' not in html  # no JSON for people

    # Validation blocks: one row per stored block, each figure and its ROC AUC interval.
    blocks = sections.rows["blocks"][1:-1]
    assert len(blocks) == len(metrics["blocks"]) == 3
    for row, block in zip(blocks, metrics["blocks"], strict=True):
        figures = block[name]
        assert row[:3] == [block["block"][:10], str(figures["n_samples"]), str(figures["positives"])]
        assert row[3] == f"{figure(figures['roc_auc'], 3)} {interval(figures['roc_auc_ci'])}"
        assert row[4:] == [
            figure(figures["pr_auc"], 3),
            figure(figures["brier"], 4),
            figure(figures["log_loss"], 4),
            figure(figures["lift_at_10pct"], 2),
            figure(figures["ece"], 4),
        ]
    pooled = sections.rows["blocks"][-1]
    assert pooled[3] == f"{figure(metrics['roc_auc'], 3)} {interval(metrics['roc_auc_ci'])}"

    # Calibration: the reliability curve (one dot per stored bin) and its table.
    bins = metrics["calibration_bins"]
    assert sections.rows["calibration"][1:] == [
        [f"{b['low'] * 100:.0f}–{b['high'] * 100:.0f}%", str(b["n"]), percent(b["mean_predicted"]),
         percent(b["observed_rate"])]
        for b in bins
    ]  # fmt: skip
    calibration_html = html[html.index('id="cs-card-calibration"') : html.index('id="cs-card-comparison"')]
    assert calibration_html.count('<circle class="cs-dot cs-observed"') == len(bins)

    # Thresholds: the two risk bands first, then the stored grid; alerts per week on today's book.
    active = Customer.objects.filter(is_active=True).count()
    horizon, n = trained.training_window["horizon_days"], metrics["n_samples"]
    stored = [*metrics["band_thresholds"], *metrics["threshold_table"]]
    assert [row["band"] for row in metrics["band_thresholds"]] == ["medium", "high"]
    assert [row["threshold"] for row in metrics["band_thresholds"]] == [
        trained.params["risk_thresholds"]["medium"],
        trained.params["risk_thresholds"]["high"],
    ]
    assert sections.rows["thresholds"][1:] == [
        [
            percent(row["threshold"]),
            f"{row['band']} risk band" if "band" in row else "",
            percent(row["precision"]),
            percent(row["recall"]),
            percent(row["contacted"] / n),
            f"{row['contacted'] / n * active * 7 / horizon:.1f}",
        ]
        for row in stored
    ]

    # Importance: a bar per feature (the top 15), named as people read them.
    top = sorted(trained.importance.items(), key=lambda item: -item[1])[:15]
    importance_html = html[html.index('id="cs-card-importance"') : html.index('id="cs-card-drift"')]
    assert importance_html.count('<rect class="cs-bar ') == len(top)
    total = sum(trained.importance.values())
    assert escape(f"{feature_info(top[0][0]).label}: {100 * top[0][1] / total:.1f}%") in importance_html

    # Drift: the PSI of every feature of the batch this version scored, largest first.
    run = PredictionRun.objects.get(trigger="batch")
    expected = sorted(run.drift.items(), key=lambda item: -item[1])
    assert [row[:2] for row in sections.rows["drift"][1:]] == [
        [feature_info(feature).label, f"{value:.4f}"] for feature, value in expected
    ]

    # The baselines, measured on the same rows.
    comparison = sections.rows["comparison"]
    # A logistic model is its own logistic baseline: that column is left out.
    baselines = ["Rules baseline"] if trained.kind == "logistic" else ["Logistic baseline", "Rules baseline"]
    assert comparison[0] == ["Metric", "This model", *baselines]
    rules = metrics["rules_reference"]
    assert comparison[1][-1] == f"{figure(rules['roc_auc'], 3)} {interval(rules['roc_auc_ci'])}"
    assert comparison[1][1] == f"{figure(metrics['roc_auc'], 3)} {interval(metrics['roc_auc_ci'])}"


def test_a_version_trained_before_the_card_fields_existed_still_renders(manager, db):
    old = ModelVersion.objects.create(
        version="xgb-2025-1",
        kind="xgboost",
        status="retired",
        trained_at=timezone.now() - dt.timedelta(days=400),
        as_of=timezone.now() - dt.timedelta(days=400),
        metrics={"roc_auc": 0.71, "threshold_table": [{"threshold": 0.5, "precision": 0.4, "recall": 0.3}]},
    )
    status, html = page(signed_in(manager), old)
    assert status == 200
    sections = Sections(html)
    for section in ("blocks", "calibration", "importance"):
        assert "not recorded for this version" in sections.text[section], section
    assert "The risk bands' own thresholds: not recorded for this version" in sections.text["thresholds"]
    assert sections.rows["thresholds"][1] == ["50.0%", "", "40.0%", "30.0%", "—", "—"]
    assert "No batch has been scored with this version yet" in sections.text["drift"]


def test_csms_cannot_open_the_card_and_viewers_cannot_change_the_champion(rules_champion, csm, viewer):
    trained = rules_champion
    candidate = ModelVersion.objects.create(
        version="lr-candidate", kind="logistic", trained_at=timezone.now(), as_of=timezone.now()
    )
    for url in (
        reverse("admin:predictions_modelversion_change", args=[trained.pk]),
        reverse("admin:predictions_modelversion_promote", args=[candidate.pk]),
        reverse("admin:predictions_modelversion_roll_back", args=[trained.pk]),
    ):
        assert signed_in(csm).get(url).status_code in (403, 404), url
    status, html = page(signed_in(viewer), trained)
    assert status == 200 and "cs-card-blocks" in html
    assert "Promote to champion" not in html and "Roll back" not in html
    promote = reverse("admin:predictions_modelversion_promote", args=[candidate.pk])
    assert signed_in(viewer).post(promote, {"note": "viewer tries"}).status_code == 403
    assert ModelVersion.objects.get(status="champion").pk == trained.pk
    assert not ModelVersionChange.objects.filter(changed_by__isnull=False).exists()


# --- The champion is never deleted -----------------------------------------------------------


def test_the_champion_cannot_be_deleted_from_its_page_or_in_bulk(manager):
    # Made champion without an audit row (as before changes were recorded), so nothing but the
    # champion rule protects it.
    trained = ModelVersion.objects.create(
        version="xgb-champion", kind="xgboost", status="champion", trained_at=timezone.now(), as_of=timezone.now()
    )
    client = signed_in(manager)
    candidate = ModelVersion.objects.create(
        version="lr-candidate", kind="logistic", trained_at=timezone.now(), as_of=timezone.now()
    )
    assert "deletelink" not in page(client, trained)[1]
    assert "deletelink" in page(client, candidate)[1]
    delete = reverse("admin:predictions_modelversion_delete", args=[trained.pk])
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403

    changelist = reverse("admin:predictions_modelversion_changelist")
    chosen = {"action": "delete_selected", "_selected_action": [trained.pk, candidate.pk]}
    confirmation = client.post(changelist, chosen)
    assert confirmation.status_code == 200
    assert f"the champion {trained.version} (promote another version first)" in confirmation.content.decode()
    assert client.post(changelist, {**chosen, "post": "yes"}).status_code == 403

    assert ModelVersion.objects.filter(pk__in=[trained.pk, candidate.pk]).count() == 2
    assert ModelVersion.objects.get(status="champion").pk == trained.pk


# --- Promote and roll back -------------------------------------------------------------------


def test_a_manager_promotes_a_version_and_rolls_it_back_each_audited_and_the_book_rescored(
    trained, manager, django_capture_on_commit_callbacks
):
    client = signed_in(manager)
    challenger = model_train(seed=0, min_positives=20)  # the same data: it cannot beat the champion
    assert challenger.status == "candidate"
    promote = reverse("admin:predictions_modelversion_promote", args=[challenger.pk])
    assert "Promote to champion" in page(client, challenger)[1]
    confirmation = client.get(promote)
    assert confirmation.status_code == 200 and trained.version in confirmation.content.decode()

    # An empty reason changes nothing.
    assert client.post(promote, {"note": ""}).status_code == 200
    assert ModelVersion.objects.get(status="champion").pk == trained.pk

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(promote, {"note": "Better recall on the enterprise plan."})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:predictions_modelversion_change", args=[challenger.pk])
    challenger.refresh_from_db()
    trained.refresh_from_db()
    assert (challenger.status, trained.status) == ("champion", "retired")
    change = ModelVersionChange.objects.get(changed_by=manager)
    assert (change.action, change.version, change.previous) == ("promoted", challenger, trained)
    assert change.reason == f"Promoted by {manager.username}: Better recall on the enterprise plan."
    assert change.changed_at >= before
    assert challenger.status_reason == change.reason
    # The book was scored again with the new champion, once, under the change's key.
    run = PredictionRun.objects.get(run_key=f"model-change:{change.pk}")
    assert run.model_version == challenger and run.status == "completed"
    active = Customer.objects.filter(is_active=True).count()
    assert ChurnPrediction.objects.filter(run=run, model_version=challenger.version).count() == active
    assert LogEntry.objects.filter(object_id=str(challenger.pk), user=manager).count() == 1

    # The champion's page offers the roll back to the version it replaced, and records it.
    status, html = page(client, challenger)
    assert status == 200
    assert f"Roll back to {trained.version}" in html
    assert "Champion history" in html and "Better recall on the enterprise plan." in html
    # Its drift is the re-score's: a whole book, like a batch.
    assert Sections(html).text["drift"].count(f"batch model-change:{change.pk}") == 1
    roll_back = reverse("admin:predictions_modelversion_roll_back", args=[challenger.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(roll_back, {"note": "Alerts doubled overnight."})
    assert response.status_code == 302
    trained.refresh_from_db()
    challenger.refresh_from_db()
    assert (trained.status, challenger.status) == ("champion", "retired")
    back = ModelVersionChange.objects.filter(changed_by=manager).order_by("-id").first()
    assert (back.action, back.version, back.previous) == ("rolled_back", trained, challenger)
    assert (
        challenger.status_reason == f"Rolled back by {manager.username} to {trained.version}: Alerts doubled overnight."
    )
    assert PredictionRun.objects.get(run_key=f"model-change:{back.pk}").model_version == trained


def test_promoting_the_champion_or_rolling_back_a_candidate_is_refused_and_writes_nothing(rules_champion, manager):
    trained = rules_champion
    client = signed_in(manager)
    changes = ModelVersionChange.objects.count()
    response = client.post(reverse("admin:predictions_modelversion_promote", args=[trained.pk]), {"note": "again"})
    assert response.status_code == 200 and "is already the champion" in response.content.decode()
    candidate = ModelVersion.objects.create(
        version="lr-candidate", kind="logistic", trained_at=timezone.now(), as_of=timezone.now()
    )
    response = client.post(reverse("admin:predictions_modelversion_roll_back", args=[candidate.pk]), {"note": "x"})
    assert response.status_code == 200 and "only the champion can be rolled back" in response.content.decode()
    # A candidate without a stored model cannot score: refused too.
    response = client.post(reverse("admin:predictions_modelversion_promote", args=[candidate.pk]), {"note": "x"})
    assert response.status_code == 200 and "has no stored model to score with" in response.content.decode()
    # The rules champion replaced nothing recorded: no roll back is offered or accepted.
    assert "Roll back" not in page(client, trained)[1]
    response = client.post(reverse("admin:predictions_modelversion_roll_back", args=[trained.pk]), {"note": "x"})
    assert response.status_code == 200 and "No earlier champion is recorded" in response.content.decode()
    assert ModelVersionChange.objects.count() == changes
    assert ModelVersion.objects.get(status="champion").pk == trained.pk
