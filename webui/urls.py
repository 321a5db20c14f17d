"""Routes of the web pages (mounted at /webui/ by grok2api/urls.py); WebSockets are in webui/routing.py."""
from django.urls import path

from webui import views

app_name = "webui"

urlpatterns = [
    path("", views.index, name="index"),
    path("login", views.login, name="login"),
    path("logout", views.logout, name="logout"),
    path("chat", views.chat, name="chat"),
    path("masonry", views.masonry, name="masonry"),
    path("chatkit", views.chatkit, name="chatkit"),
    path("api/models", views.api_models, name="api-models"),
    path("api/chat/completions", views.api_chat, name="api-chat"),
    path("api/voice/token", views.api_voice_token, name="api-voice-token"),
]
