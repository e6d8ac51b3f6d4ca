"""Pages: thin views that render templates; the pages' scripts read the REST API and the run's socket."""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.runs import catalog, inputs, recipes, selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.forms import RunLaunchForm, option_details
from webapp.runs.models import RunStatus
from webapp.runs.services import launch, lifecycle


def _run_or_404(request: HttpRequest, run_id: int):
    try:
        return selectors.run_get(user=request.user, run_id=run_id)
    except ApplicationError:
        raise Http404("run not found") from None


def _bad_request(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    return render(request, "runs/bad_request.html", {"message": error.message}, status=400)


@login_required
def runs_list(request: HttpRequest) -> HttpResponse:
    return render(request, "runs/list.html", {
        "statuses": RunStatus.values,
        "methods": catalog.methods(),
    })


@login_required
def run_new(request: HttpRequest) -> HttpResponse:
    form = RunLaunchForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            run = launch.run_create(owner=request.user, spec=form.to_spec())
        except ApplicationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Run #{run.pk} queued.", extra_tags="while-queued")  # the run page drops it once started
            return redirect("runs:detail", run_id=run.pk)
    status = 400 if request.method == "POST" else 200
    options = {
        "benchmarks": form.benchmarks,
        "datasets": [d.as_dict() for d in form.datasets],
        "presets": catalog.presets(),
        "recipes": recipes.pair_defaults(),  # the form's values for a pair of dataset kinds with a recipe
        "engine_defaults": catalog.launch_defaults({}),  # ... and for any other pair
    }
    return render(request, "runs/new.html", {
        "form": form,
        "advanced": [form[name] for name in RunLaunchForm.ADVANCED],
        "advanced_has_errors": any(form[name].errors for name in RunLaunchForm.ADVANCED),
        "real_datasets": [d for d in form.datasets if not d.toy],
        "options": options,
        "option_details": option_details(),
        "datasets_root": catalog.settings.DATASETS_ROOT,
    }, status=status)


@login_required
def datasets_status(request: HttpRequest) -> JsonResponse:
    """The real datasets' verdicts and the progress of their checks (the launch page polls it)."""
    entries = catalog.real_datasets(wait=0)
    return JsonResponse({"datasets": [
        {"key": e.key, "ok": e.ok, "problems": e.problems, "check": e.check, "counts": e.counts,
         "choice_label": RunLaunchForm._dataset_label(e)} for e in entries
    ]})


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    return render(request, "runs/detail.html", {
        "run": run,
        "config_json": json.dumps(run.config, indent=2),
        "checkpoints": selectors.checkpoints_of(run=run),
        "teachers": selectors.teachers_of(run),
        "traceback": _traceback_of(run),
        "baseline": selectors.baseline_of(run),
        "group": selectors.group_of(run),
    })


def _traceback_of(run) -> str:
    """The traceback of a run that failed on an unexpected error (the worker keeps it in the run folder)."""
    if run.status != RunStatus.FAILED or not run.output_dir:
        return ""
    try:
        return (Path(run.output_dir) / "traceback.txt").read_text()[-20000:]
    except (OSError, UnicodeDecodeError):
        return ""


@login_required
def run_gallery(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    others = (selectors.runs_visible_to(request.user)  # side by side only with runs on the same class list
              .filter(target_dataset=run.target_dataset, classes_digest=run.classes_digest).exclude(pk=run.pk)
              .defer("config").order_by("-created_at")[:50])
    return render(request, "runs/gallery.html", {
        "run": run,
        "others": others,
        "compare_id": str(inputs.positive_int(request.GET.get("compare", "")) or ""),  # a bad id: no second run
        "gallery_config": {"run": run.pk, "method": run.method, "name": run.name},
    })


@login_required
def runs_compare(request: HttpRequest) -> HttpResponse:
    try:
        ids = inputs.id_list(request.GET, "ids")
    except ApplicationError as error:
        return _bad_request(request, error)
    return render(request, "runs/compare.html", {"ids": ids})


@login_required
@require_POST
def run_action(request: HttpRequest, run_id: int, action: str) -> HttpResponse:
    """Cancel, resume or delete from a page (plain form posts; the scripts use the API)."""
    try:
        if action == "cancel":
            lifecycle.run_cancel(user=request.user, run_id=run_id)
            messages.info(request, "Cancel requested.")
        elif action == "resume":
            lifecycle.run_resume(user=request.user, run_id=run_id)
            messages.info(request, "Run queued again; it resumes from its latest checkpoint.")
        elif action == "delete":
            lifecycle.run_delete(user=request.user, run_id=run_id)
            messages.info(request, f"Run #{run_id} deleted.")
            return redirect("runs:list")
        else:
            raise Http404("unknown action")
    except ApplicationError as error:
        if error.status_code == 404:
            raise Http404("run not found") from None
        messages.error(request, error.message)
    return redirect("runs:detail", run_id=run_id)
