from django.urls import path

from monitoring import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.ReadyzView.as_view(), name="readyz"),
    path("metrics", views.metrics, name="metrics"),
]
