from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from projects.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz),
    path("api/", include("facelabel.api_urls")),
    path("account/", include("accounts.urls")),
    path("play/", include("activities.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("audit.urls")),
    path("", include("projects.urls")),
]

handler400 = "projects.views.bad_request"
