"""Helpful error pages (HTML in the UI, JSON under /api/)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get(
        "Accept", ""
    )


def _error(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            {"detail": message, "code": title.lower().replace(" ", "_")}, status=status
        )
    return render(
        request, "error.html", {"status": status, "title": title, "message": message}, status=status
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(
        request,
        400,
        "Bad request",
        "The request could not be understood. Check the address or the form.",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    detail = str(exception) if exception and str(exception) else "Your role does not allow this."
    return _error(request, 403, "Not allowed", detail)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(
        request,
        404,
        "Not found",
        "There is nothing here, or it belongs to an organization you are not a member of.",
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(
        request, 500, "Server error", "Something went wrong on our side. The error was logged."
    )
