"""Routes. No trailing slashes anywhere (contract): a slash redirect would break POSTs."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from alerts.api.realtime_views import AlertWsTicketView
from alerts.api.views import AlertViewSet, NotificationPreferenceView
from core.api.errors import not_found
from core.auth.views import (
    AdminSignInForm,
    ApiDocsView,
    LoginView,
    LogoutView,
    RefreshView,
    admin_login,
    signin_page,
)
from customers.api.views import (
    CustomerCsvImportView,
    CustomerViewSet,
    ImportJobCreateView,
    ImportJobErrorsView,
    ImportJobView,
)
from dashboard.views import (
    DashboardChartView,
    DashboardMetricsView,
    InterventionAnalyticsView,
    MLAnalyticsView,
    RecommendView,
)
from integrations.api.views import IntegrationViewSet
from interventions.api.views import InterventionViewSet, OutcomeView
from playbooks.api.views import EmailReviewViewSet, ExecutionViewSet, PlaybookViewSet, TriggerView
from predictions.api.views import (
    BatchPredictView,
    CausesExplainView,
    ChurnCauseListView,
    ChurnPredictView,
    FeatureImportanceView,
    ModelMetricsLatestView,
)

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")
router.register("interventions", InterventionViewSet, basename="intervention")
router.register("integrations", IntegrationViewSet, basename="integration")
router.register("alerts", AlertViewSet, basename="alert")
# Playbooks
router.register("playbooks", PlaybookViewSet, basename="playbook")
router.register("playbook-executions", ExecutionViewSet, basename="playbook-execution")
router.register("playbook-email-reviews", EmailReviewViewSet, basename="playbook-email-review")

api = [
    path("auth/login", LoginView.as_view(), name="auth-login"),
    path("auth/refresh", RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("dashboard/metrics", DashboardMetricsView.as_view(), name="dashboard-metrics"),
    path("dashboard/chart-data", DashboardChartView.as_view(), name="dashboard-chart"),
    path("interventions/analytics", InterventionAnalyticsView.as_view(), name="intervention-analytics"),
    path("churn-causes", ChurnCauseListView.as_view(), name="churn-causes"),
    path("v1/churn/predict", ChurnPredictView.as_view(), name="churn-predict"),
    path("v1/causes/explain", CausesExplainView.as_view(), name="causes-explain"),
    path("ml/batch-predict", BatchPredictView.as_view(), name="ml-batch-predict"),
    path("ml/feature-importance", FeatureImportanceView.as_view(), name="ml-feature-importance"),
    path("ml/analytics", MLAnalyticsView.as_view(), name="ml-analytics"),
    path("ml/recommend-intervention", RecommendView.as_view(), name="ml-recommend-intervention"),
    path("ml/update-outcome", OutcomeView.as_view(), name="ml-update-outcome"),
    path("import/customers/csv", CustomerCsvImportView.as_view(), name="customer-import-csv"),
    path("imports", ImportJobCreateView.as_view(), name="import-job-create"),
    path("imports/<int:pk>", ImportJobView.as_view(), name="import-job"),
    path("imports/<int:pk>/errors.csv", ImportJobErrorsView.as_view(), name="import-job-errors"),
    path("notifications/preferences", NotificationPreferenceView.as_view(), name="notification-preferences"),
    path("v1/playbooks/trigger", TriggerView.as_view(), name="playbooks-trigger"),
    path("alerts/ws-ticket", AlertWsTicketView.as_view(), name="alert-ws-ticket"),  # live alert feed
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", ApiDocsView.as_view(url_name="schema"), name="docs"),
    path("", include(router.urls)),
    # Last: any other /api/ URL is the JSON 404 even with DEBUG on (`make run`), where Django
    # would answer its HTML debug page instead of calling handler404.
    # csrf_exempt: unlike DRF views, a plain view gets Django's CSRF check, which would turn an
    # unmatched PATCH into an HTML 403 (the API's CSRF defence is the Origin check).
    re_path(r"^.*$", csrf_exempt(not_found), name="api-not-found"),
]

# The admin's sign-in follows the same policy as /api/auth/login and /signin (one count per
# account, one attempt at a time): same form, and a view that turns a concurrent attempt into 429.
admin.site.login_form = AdminSignInForm
# "View site" in the admin header: the product's home for staff is the admin itself (Django's
# default, "/", is no page here).
admin.site.site_url = "/admin/"

urlpatterns = [
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("signin", signin_page, name="signin"),
    path("api/", include(api)),
    # The contract puts the model card outside /api.
    path("model/metrics/latest", ModelMetricsLatestView.as_view(), name="model-metrics-latest"),
    # Operations: /healthz, /readyz, /metrics (outside the API: probes and scrapers do not sign in).
    path("", include("monitoring.urls")),
]

handler404 = "core.api.errors.not_found"  # JSON 404 under /api/: API clients parse every answer
