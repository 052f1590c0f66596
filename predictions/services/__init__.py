"""Writes of the predictions app, split by subdomain:

- `portfolio`: daily portfolio snapshots and the aggregated churn causes;
- `registry`: training, registering and promoting model versions;
- `scoring`: batch and real-time scoring, writing predictions back to customers;
- `history`: thinning old predictions (retention jobs);
- `drift`: a retrain after a batch whose features drifted majorly (at most once a day).
"""

from predictions.services.portfolio import churn_causes_refresh, portfolio_snapshot_take

__all__ = ["churn_causes_refresh", "portfolio_snapshot_take"]
