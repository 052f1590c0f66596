"""The contract's camelCase bodies of the playbooks' domain answers (services and selectors
return dataclasses; the output serializers declare these shapes for the schema)."""

from interventions.selectors import Recommendation
from playbooks.selectors import AutomationCounts, DryRun
from playbooks.services import BulkEnrolment, Triggered


def ai_recommendation_body(recommendation: Recommendation | None) -> dict | None:
    if recommendation is None:
        return None
    return {
        "recommendedType": recommendation.type,
        "priority": recommendation.priority,
        "estimatedSuccess": recommendation.estimated_success,
        "reasoning": recommendation.reasoning,
    }


def trigger_body(triggered: Triggered, *, response_ms: float) -> dict:
    return {
        "interventionId": triggered.intervention.pk,
        "executionId": triggered.execution.pk,
        "status": "triggered",
        "estimatedCompletion": triggered.estimated_completion,
        "responseTime": response_ms,
        "playbookType": triggered.playbook.name,
        "aiRecommendation": ai_recommendation_body(triggered.recommendation),
    }


def bulk_trigger_body(enrolment: BulkEnrolment) -> dict:
    return {
        "playbookId": enrolment.playbook.pk,
        "requested": enrolment.requested,
        "enrolled": enrolment.enrolled,
        "skipped": enrolment.skipped,
        "executionIds": enrolment.execution_ids,
    }


def dry_run_body(dry_run: DryRun) -> dict:
    return {
        "playbookId": dry_run.playbook.pk,
        "playbook": dry_run.playbook.name,
        "asOf": dry_run.as_of,
        "wouldEnrol": dry_run.would_enrol,
        "excluded": dry_run.excluded,
        "customers": [
            {
                "customerId": plan.customer_id,
                "customer": plan.customer_name,
                "reasons": plan.reasons,
                "holdoutChance": plan.holdout_chance,
                "exitsImmediately": plan.exits_immediately,
                "steps": [{"key": step.key, "type": step.type, "wouldDo": step.would_do} for step in plan.steps],
            }
            for plan in dry_run.customers
        ],
    }


def automation_stats_body(counts: AutomationCounts) -> dict:
    """The ML analytics page's `interventionStats`: playbook executions and their steps."""
    executions = counts.executions
    return {
        "totalExecutions": executions,
        "successRate": round(100 * counts.completed / executions, 1) if executions else 0,
        # Per execution: steps that succeeded, and steps that failed (the "issues found").
        "avgStepsCompleted": round(counts.steps_succeeded / executions) if executions else 0,
        "avgIssuesFound": round(counts.steps_failed / executions) if executions else 0,
    }
