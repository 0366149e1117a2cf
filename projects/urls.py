from django.urls import path

from . import views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("projects/<int:project_id>/", views.project_detail, name="detail"),
    path("projects/<int:project_id>/settings/", views.project_settings, name="settings"),
    path("projects/<int:project_id>/members/", views.members, name="members"),
    path("projects/<int:project_id>/upload/", views.upload, name="upload"),
    path("projects/<int:project_id>/batches/<int:batch_id>/", views.batch_detail, name="batch"),
    path(
        "projects/<int:project_id>/batches/<int:batch_id>/progress/",
        views.batch_progress,
        name="batch_progress",
    ),
    path("projects/<int:project_id>/review/", views.review, name="review"),
    path("projects/<int:project_id>/review/bulk/", views.images_bulk_label, name="bulk_label"),
    path("projects/<int:project_id>/review/undo/", views.label_undo, name="label_undo"),
    path("projects/<int:project_id>/review/redo/", views.label_undo, {"redo": True}, name="label_redo"),
    path("projects/<int:project_id>/images/<int:image_id>/", views.image_detail, name="image"),
    path("projects/<int:project_id>/images/<int:image_id>/label/", views.image_label, name="image_label"),
    path(
        "projects/<int:project_id>/images/<int:image_id>/<str:kind>.jpg",
        views.image_file,
        name="image_file",
    ),
    path("projects/<int:project_id>/exports/", views.export_create, name="export_create"),
    path("projects/<int:project_id>/exports/<int:export_id>/", views.export_detail, name="export"),
    path(
        "projects/<int:project_id>/exports/<int:export_id>/download/",
        views.export_download,
        name="export_download",
    ),
]
