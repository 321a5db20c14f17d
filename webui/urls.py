"""Web pages (filled in by the web pages issue)."""
urlpatterns: list = []
