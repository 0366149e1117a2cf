from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("projects/<int:project_id>/health/", views.health, name="health"),
    path("projects/<int:project_id>/audits/", views.audit_create, name="audit_create"),
    path("projects/<int:project_id>/label-policy/", views.policy_set, name="policy_set"),
    path("projects/<int:project_id>/duplicates/", views.duplicates, name="duplicates"),
    path(
        "projects/<int:project_id>/duplicates/<int:group>/keep/", views.duplicate_keep, name="duplicate_keep"
    ),
    path(
        "projects/<int:project_id>/duplicates/<int:group>/resolve/",
        views.duplicate_resolve,
        name="duplicate_resolve",
    ),
    path(
        "projects/<int:project_id>/images/<int:image_id>/exclude/", views.image_exclude, name="image_exclude"
    ),
    path(
        "projects/<int:project_id>/images/<int:image_id>/include/",
        views.image_exclude,
        {"include": True},
        name="image_include",
    ),
    path("projects/<int:project_id>/unusable/exclude/", views.unusable_exclude, name="unusable_exclude"),
    path("projects/<int:project_id>/map/", views.dataset_map, name="map"),
    path("projects/<int:project_id>/map/points/", views.map_points, name="map_points"),
]
