"""The prediction API's response bodies (camelCase, as the contract names them), built from the
domain objects the selectors and services return."""

from collections.abc import Mapping
from typing import Any

from customers.selectors import iso
from predictions.causes import impact_percent, percent_causes, recommended_actions
from predictions.models import ChurnPrediction
from predictions.selectors import FeatureImportance, MlAnalytics

# Categories a customer success team can act on (the others, e.g. tenure, only explain).
_ACTIONABLE = ("support", "billing", "product")


def prediction_body(prediction: ChurnPrediction) -> dict:
    """The predict response (the view adds `responseTime`)."""
    probability = float(prediction.churn_probability)
    return {
        "customerId": prediction.customer_id,
        "churnProbability": f"{probability * 100:.2f}",
        "riskLevel": prediction.risk_level,
        "topCauses": [
            {"factor": cause.get("factor"), "impact": impact_percent(cause.get("impact")), "value": cause.get("value")}
            for cause in prediction.top_causes
        ],
        "confidence": f"{(prediction.confidence or 0) * 100:.2f}",
        "recommendedActions": recommended_actions(prediction.top_causes, prediction.risk_level),
    }


def latest_prediction_body(prediction: ChurnPrediction | None) -> dict | None:
    """The customer detail's `latestPrediction`."""
    if prediction is None:
        return None
    return {
        "churnProbability": float(prediction.churn_probability),
        "riskLevel": prediction.risk_level,
        "topCauses": percent_causes(prediction.top_causes),
        "predictionDate": iso(prediction.prediction_date),
        "modelVersion": prediction.model_version,
    }


def stored_prediction_body(row: Mapping[str, Any]) -> dict:
    """One of the batch-predict answers, from a `predictions.selectors.stored_predictions` row."""
    return {
        "customerId": row["customer_id"],
        "churnProbability": float(row["churn_probability"]),
        "riskLevel": row["risk_level"],
        "confidence": row["confidence"] if row["confidence"] is not None else 0.0,
        "topFactors": [
            {
                "feature": cause.get("factor"),
                "importance": impact_percent(cause.get("impact")),
                "impact": "negative" if cause.get("direction", "increases") == "increases" else "positive",
                "description": cause.get("value"),
            }
            for cause in row["top_causes"]
        ],
        "recommendedActions": recommended_actions(row["top_causes"], row["risk_level"]),
    }


def feature_importance_body(feature: FeatureImportance) -> dict:
    share = feature.share
    return {
        "feature": feature.label,
        "importance": round(share, 4),
        "impact": "negative" if feature.higher_is_riskier else "positive",
        "description": f"{feature.label} ({feature.category})",
        "rawImportance": feature.raw,
        "confidenceLevel": "high" if share >= 15 else "medium" if share >= 5 else "low",
        "actionability": "high" if feature.category in _ACTIONABLE else "low",
    }


def ml_analytics_body(analytics: MlAnalytics, *, intervention_stats: dict) -> dict:
    """The ML analytics page; its playbook figures (`interventionStats`) come from the playbooks."""
    total = analytics.total

    def shares(counts: dict[str, int]) -> dict[str, Any]:
        return {key: round(100 * count / total) if total else 0 for key, count in counts.items()}

    performance = analytics.performance
    importance = [feature_importance_body(feature) for feature in analytics.feature_importance]
    return {
        "totalCustomers": total,
        "modelVersion": analytics.model_version,
        "modelPerformance": {
            "rocAuc": performance["roc_auc"],
            "accuracy": performance["accuracy"],
            "precision": performance["precision"],
            "recall": performance["recall"],
            "f1Score": performance["f1_score"],
            "brier": performance["brier"],
            "liftAt10pct": performance["lift_at_10pct"],
        },
        "featureImportances": importance,
        "healthScoreAnalytics": {
            "average": round(analytics.health_average, 1),
            "distribution": analytics.health_bands,
            "percentages": shares(analytics.health_bands),
        },
        "churnRiskAnalytics": {
            "average": round(100 * analytics.risk_average, 1),
            "distribution": analytics.risk_levels,
            "percentages": shares(analytics.risk_levels),
        },
        "interventionStats": intervention_stats,
        "riskDistribution": dict(analytics.risk_levels),
        "insights": {
            "topRiskFactors": [
                {
                    "factor": row["feature"],
                    "impact": row["importance"],
                    "actionable": row["actionability"] == "high",
                    "recommendation": f"{row['feature']} shows {row['importance']:.1f}% impact on churn prediction.",
                }
                for row in importance[:3]
            ],
            "healthTrends": analytics.health_trends,
        },
    }
