from django.urls import path

from . import views

app_name = "activities"

urlpatterns = [
    path("", views.start, name="start"),
    path("recognise/", views.recognise, name="recognise"),
    path("happy/score/", views.dance_round, name="dance_score"),
    path("disgust/summary/", views.rorschach_summary_view, name="rorschach_summary"),
    path("<slug:emotion>/", views.experience, name="experience"),
]
