from django.urls import path

from tenants import views

app_name = "tenants"

urlpatterns = [
    path("", views.home, name="home"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation-accept"),
    path("o/<slug:org_slug>/", views.dashboard, name="dashboard"),
]
