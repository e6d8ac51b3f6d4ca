"""The launch field ``weights`` (auto, imagenet, random) becomes ``model.*_pretrained`` the same way from
the API and the form; the catalogue and the form say which presets have ImageNet weights here."""

from __future__ import annotations

import json

import pytest
import torch

from tests.webapp.runs.conftest import TOY
from webapp.runs import catalog
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

WITH_WEIGHTS = {"lite0", "lite1", "lite2", "mobilenetv2"}
NO_WEIGHTS_MIT_B0 = "mit_b0 has no ImageNet weights on this server (presets with them: lite0, lite1, lite2, mobilenetv2)"


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    return client


def pretrained(response) -> tuple[str, str]:
    assert response.status_code == 201, response.json()
    model = response.json()["config"]["model"]
    return model["student_pretrained"], model["auxiliary_pretrained"]


def test_the_catalogue_says_which_presets_have_imagenet_weights():
    presets = {p["name"]: p["imagenet_weights"] for p in catalog.presets()}
    assert {name for name, has in presets.items() if has} == WITH_WEIGHTS
    assert presets["mit_b0"] is False and presets["mit_b5"] is False and presets["mobilenetv3"] is False


def test_the_launch_options_carry_it(api):
    presets = api.get("/api/launch-options/").json()["presets"]
    assert {p["name"] for p in presets if p["imagenet_weights"]} == WITH_WEIGHTS


def test_an_engine_error_on_weights_the_field_chose_is_put_on_the_field(api, monkeypatch):
    """Should the catalogue and the engine disagree (here the catalogue claims weights for mit_b0), the
    engine's refusal of ``model.student_pretrained`` comes back on ``weights``, not as a 500."""
    monkeypatch.setattr(catalog, "presets", lambda: [{"name": "mit_b0", "imagenet_weights": True}])
    response = api.post("/api/runs/", {**TOY, "weights": "auto"}, format="json")
    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["weights"]
    assert "no ImageNet weights are available for preset 'mit_b0'" in message


def test_a_preset_whose_package_is_not_installed_has_no_weights(monkeypatch):
    import dataclasses

    from duda_engine.models.imagenet import IMAGENET_WEIGHTS

    lite1 = IMAGENET_WEIGHTS["tf_efficientnet_lite1"]
    monkeypatch.setitem(IMAGENET_WEIGHTS, "tf_efficientnet_lite1", dataclasses.replace(lite1, package="duda-absent-package"))
    assert catalog.has_imagenet_weights.__wrapped__("lite1") is False  # uncached: the cached answer is the installed one
    assert catalog.has_imagenet_weights.__wrapped__("lite0") is True


@pytest.mark.parametrize(("weights", "student"), [("auto", "imagenet"), ("imagenet", "imagenet"), ("random", "")])
def test_lite0_starts_from_the_chosen_weights(api, weights, student):
    response = api.post("/api/runs/", {**TOY, "student": "lite0", "weights": weights}, format="json")
    assert pretrained(response) == (student, "")


def test_the_api_default_is_auto(api):
    assert pretrained(api.post("/api/runs/", {**TOY, "student": "lite0"}, format="json")) == ("imagenet", "")
    assert pretrained(api.post("/api/runs/", TOY, format="json")) == ("", "")  # mit_b0: none here


def test_a_preset_without_weights_is_random_with_auto_and_one_error_with_imagenet(api):
    assert pretrained(api.post("/api/runs/", {**TOY, "weights": "auto"}, format="json")) == ("", "")
    response = api.post("/api/runs/", {**TOY, "weights": "imagenet"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"weights": [NO_WEIGHTS_MIT_B0]}
    assert Run.objects.count() == 1


@pytest.mark.parametrize(
    ("student", "weights", "expected"),
    [
        ("lite0", "auto", ("imagenet", "imagenet")),
        ("lite0", "imagenet", ("imagenet", "imagenet")),
        ("mit_b0", "auto", ("", "imagenet")),
        ("lite0", "random", ("", "")),
    ],
)
def test_duda_chooses_for_the_student_and_the_auxiliary(api, student, weights, expected):
    payload = {**TOY, "method": "duda", "student": student, "auxiliary": "lite2", "weights": weights}
    assert pretrained(api.post("/api/runs/", payload, format="json")) == expected


def test_duda_with_imagenet_names_every_preset_without_weights(api):
    payload = {**TOY, "method": "duda", "student": "mit_b0", "auxiliary": "mit_b1", "weights": "imagenet"}
    response = api.post("/api/runs/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "weights": ["mit_b0, mit_b1 have no ImageNet weights on this server (presets with them: lite0, lite1, lite2, mobilenetv2)"]
    }


def test_an_override_of_the_pretrained_weights_wins(api, settings, tmp_path):
    settings.WEIGHTS_DIR = tmp_path / "weights"
    settings.WEIGHTS_DIR.mkdir()
    torch.save({"conv_stem.weight": torch.zeros(1)}, settings.WEIGHTS_DIR / "my_lite0.pth")  # checked at launch: its format
    lite0 = {**TOY, "student": "lite0", "weights": "auto"}
    chosen = api.post("/api/runs/", {**lite0, "overrides": {"model.student_pretrained": "my_lite0.pth"}}, format="json")
    assert pretrained(chosen) == (str(settings.WEIGHTS_DIR.resolve() / "my_lite0.pth"), "")
    none = api.post("/api/runs/", {**lite0, "overrides": {"model.student_pretrained": ""}}, format="json")
    assert pretrained(none) == ("", "")
    imagenet = api.post("/api/runs/", {**lite0, "weights": "random", "overrides": {"model.student_pretrained": "imagenet"}},
                        format="json")
    assert pretrained(imagenet) == ("imagenet", "")


@pytest.mark.parametrize("value", ["ImageNet", "", "yes", "none"])
def test_the_api_rejects_an_unknown_value_on_the_field(api, value):
    response = api.post("/api/runs/", {**TOY, "weights": value}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["weights"]


def test_self_training_with_feature_distance_launches_from_imagenet_weights(api):
    """The feature distance needs the student's ImageNet weights: ``auto`` on lite0 gives them."""
    payload = {**TOY, "method": "self_training", "student": "lite0", "weights": "auto",
               "overrides": {"self_training.fdist_weight": 0.5}}
    response = api.post("/api/runs/", payload, format="json")
    assert pretrained(response) == ("imagenet", "")
    assert response.json()["config"]["self_training"]["fdist_weight"] == 0.5
    refused = api.post("/api/runs/", {**payload, "weights": "random"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "overrides": ["self_training.fdist_weight: feature distance needs model.student_pretrained"]
    }


# --- the form ----------------------------------------------------------------------------------------------

FORM = {"benchmark": "toy_gta2real", "method": "source_only", "student": "lite0", "iterations": "8",
        "crop_size": "64x64", "batch_size": "1", "baseline": "auto"}


def test_the_form_offers_the_choice_with_auto_first_and_marks_the_presets_with_weights(page):
    html = page.get("/runs/new/").content.decode()
    select = html[html.index('name="weights"'):]
    select = select[:select.index("</select>")]
    assert '<option value="auto" selected>' in select and 'value="imagenet"' in select and 'value="random"' in select
    assert "lite0 — EfficientNet-Lite0 · ImageNet</option>" in html
    assert "mit_b0 — MiT-B0</option>" in html
    details = json.loads(html.split('id="option-details" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert details["student"]["lite0"] == "EfficientNet-Lite0 + SegFormer MLP head (width 128) · ImageNet weights on this server"


@pytest.mark.parametrize(("weights", "student"), [(None, "imagenet"), ("auto", "imagenet"), ("imagenet", "imagenet"),
                                                  ("random", "")])
def test_the_form_maps_the_choice_like_the_api(page, weights, student):
    response = page.post("/runs/new/", {**FORM, **({"weights": weights} if weights else {})})
    assert response.status_code == 302
    model = Run.objects.get().config["model"]
    assert (model["student_pretrained"], model["auxiliary_pretrained"]) == (student, "")


def test_the_form_puts_the_errors_next_to_the_field(page):
    for data, text in (({"weights": "ImageNet"}, "Select a valid choice"),
                       ({"weights": "imagenet", "student": "mit_b0"}, NO_WEIGHTS_MIT_B0)):
        response = page.post("/runs/new/", {**FORM, **data})
        assert response.status_code == 400
        html = response.content.decode()
        start = html.index('data-field="weights"')
        block = html[start:html.index("</div>\n", html.index('id="weights-errors"', start))]
        assert "has-error" in html[start - 40:start + 40] and text in block, block
    assert not Run.objects.exists()
