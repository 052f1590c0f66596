"""Canonical events from connectors and webhooks → `customers`, which writes its own tables.

This module keeps what is the integrations' own: one apply at a time per integration, the
`ExternalRecord` rows that remember what each outside object became and its version (the
customers' applier reads and keeps them through the `Ledger` it is given), and what follows a
commit (re-scores, alerts and published events for failed payments).
"""

import datetime as dt
from collections.abc import Iterable
from typing import Any, cast

from django.db import transaction

from alerts.models import Alert
from alerts.services import alerts_create_many
from core.db import values_update
from core.events import PaymentFailed, publish_on_commit
from customers.history.apply import ApplyResult, Record, UnresolvedCustomer, canonical_events_apply
from customers.history.canonical import CanonicalEvent
from customers.selectors import customer_names
from integrations.models import ExternalRecord, Integration
from predictions.services.scoring import rescore_after_commit

__all__ = ["ApplyResult", "UnresolvedCustomer", "apply_events"]


class ExternalRecordLedger:
    """One integration's `ExternalRecord` rows as the applier's ledger: read in bulk, kept in
    memory, written in one bulk insert and one bulk update per flush."""

    def __init__(self, integration_id: int) -> None:
        self.integration_id = integration_id
        self.new_records: list[ExternalRecord] = []
        self.changed_records: list[ExternalRecord] = []

    def records(self, kind: str | Iterable[str], external_ids: Iterable[str]) -> dict[tuple[str, str], Record]:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        ids = set(external_ids)
        if not ids:
            return {}
        rows = ExternalRecord.objects.filter(integration_id=self.integration_id, kind__in=kinds, external_id__in=ids)
        return {(r.kind, r.external_id): r for r in rows}

    def keep(self, kind: str, external_id: str, version: dt.datetime, existing: Record | None, **values: Any) -> Record:
        if existing is None:
            record = ExternalRecord(
                integration_id=self.integration_id, kind=kind, external_id=external_id, version=version, **values
            )
            self.new_records.append(record)
            return record
        record = cast(ExternalRecord, existing)  # every record the applier holds came from here
        record.version = version
        for name, value in values.items():
            setattr(record, name, value)
        self.changed_records.append(record)
        return record

    def pending(self, kind: str) -> list[Record]:
        return [r for r in self.new_records if r.kind == kind]

    def flush(self) -> None:
        ExternalRecord.objects.bulk_create(self.new_records, batch_size=1000)
        if self.changed_records:
            values_update(ExternalRecord, self.changed_records, ["local_id", "customer_id", "version", "data"])
        self.new_records, self.changed_records = [], []

    def subscriptions(self, customer_ids: Iterable[int]) -> list[tuple[int, dict]]:
        return list(
            ExternalRecord.objects.filter(kind="subscription", customer_id__in=set(customer_ids)).values_list(
                "customer_id", "data"
            )
        )


@transaction.atomic
def apply_events(*, integration_id: int, events: list[CanonicalEvent]) -> ApplyResult:
    """Apply a batch of canonical events; all or nothing (a failure raises and writes nothing).

    Applies of one integration are serialised (a row lock on the integration) so two workers never
    race to create the same record. Significant events ask for a re-score after commit, and
    failed payments are published (`core.events.PaymentFailed`) after commit.
    """
    # NO KEY: webhook inserts take KEY SHARE on the integration row and must not wait for an apply.
    Integration.objects.select_for_update(no_key=True).filter(pk=integration_id).values_list("pk", flat=True).first()
    result = canonical_events_apply(
        source_id=integration_id, ledger=ExternalRecordLedger(integration_id), events=events
    )
    _after_commit(result)
    return result


def _after_commit(result: ApplyResult) -> None:
    # Significant events (ticket opened, payment failed, NPS answer, long-gap login, churn):
    # the prediction engine re-scores the customer after commit, debounced per customer.
    for customer_id in sorted(result.significant):
        rescore_after_commit(customer_id=customer_id)
    if result.payments_failed:
        _alert_failed_payments(result.payments_failed)
    for payment in result.payments_failed:
        publish_on_commit(payment)


def _alert_failed_payments(payments: list[PaymentFailed]) -> None:
    """One alert per newly failed payment, raised in the same transaction (one bulk write)."""
    names = customer_names(customer_ids=[p.customer_id for p in payments])
    alerts_create_many(
        alerts=[
            {
                "title": f"Payment failed: {names.get(p.customer_id, p.customer_id)}",
                "message": f"A payment of {p.amount} failed on {p.occurred_at:%Y-%m-%d}.",
                "severity": Alert.Severity.HIGH,
                "customer_id": p.customer_id,
                "source": Alert.Source.PAYMENT_FAILED,
                "context": {"billingEventId": p.billing_event_id, "integrationId": p.integration_id},
            }
            for p in payments
        ]
    )
