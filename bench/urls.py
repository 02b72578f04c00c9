"""The product's URLs plus /hello/ (bench only, never in production)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import urlpatterns as product_urls


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, world.")


urlpatterns = [path("hello/", hello), *product_urls]
