import os

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path


def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


def item(request, item_id):
    return JsonResponse({"item": item_id, "settings": settings.CXTM_SETTINGS, "pid": os.getpid()})


urlpatterns = [
    path("healthz", healthz),
    path("items/<int:item_id>", item),
]
