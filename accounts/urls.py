from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.profile, name="profile"),
    path("password/", views.PasswordChange.as_view(), name="password_change"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
]
