from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("projects/<int:project_id>/health/", views.health, name="health"),
    path("projects/<int:project_id>/audits/", views.audit_create, name="audit_create"),
    path("projects/<int:project_id>/label-policy/", views.policy_set, name="policy_set"),
]
