"""Fixtures for the runs app: users, API clients (session and token), a run folder per test, and a
stand-in for a worker's results written through the same services the real worker uses."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from duda_engine.data.classes import CITYSCAPES
from webapp.runs.launch_schema import LaunchSpec
from webapp.runs.models import Run
from webapp.runs.services import records, worker
from webapp.runs.services.launch import run_create

TOY = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "iterations": 8,
       "crop_size": [64, 64], "batch_size": 1, "num_workers": 0}


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Cheap password hashes (modules whose users log in to a server process override this)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def close_thread_connections(django_db_setup):
    """Before the test database is dropped: close connections that threads of this process opened
    (Django's ASGI handler runs each request in its own thread) and that wait for the collector."""
    yield
    import gc

    from django.db import connections

    gc.collect()
    connections.close_all()


@pytest.fixture(autouse=True)
def runs_dir(settings, tmp_path):
    settings.RUNS_DIR = tmp_path / "runs"
    return settings.RUNS_DIR


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("root", password="root-password", is_staff=True)


@pytest.fixture
def api(alice):
    client = APIClient()
    client.login(username="alice", password="alice-password")
    return client


@pytest.fixture
def bob_api(bob):
    client = APIClient()
    client.login(username="bob", password="bob-password")
    return client


@pytest.fixture
def token_api(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    return client


def launch(owner, **fields) -> Run:
    spec = LaunchSpec(**{**TOY, **fields})
    return run_create(owner=owner, spec=spec)


def sample(name: str, image: np.ndarray, **class_ids: np.ndarray):
    """What the engine hands ``on_samples`` for one image: the input and class-id maps by role."""
    from duda_engine.callbacks import PredictionSample

    return PredictionSample(name=name, image=image, class_ids=class_ids)


def simulate_results(run: Run, *, steps=(4, 8), finish=True, checkpoint_bytes: int = 300_000) -> Run:
    """Play a worker's part through the services: claim, metrics, evaluations, samples, checkpoints."""
    claim = worker.run_claim(run_id=run.pk, worker_host="test@host", worker_gpu="CPU")
    assert claim is not None
    rng = np.random.default_rng(run.pk)
    last = 0
    for step in steps:
        records.metrics_record(run_id=run.pk, token=claim.token, points=[(s, "loss/source", 3.0 - s * 0.1) for s in range(last + 1, step + 1)])
        last = step
        per_class = {name: float(rng.uniform(0, 60)) for name in CITYSCAPES.names}
        per_class["train"] = float("nan")
        records.evaluation_record(run_id=run.pk, token=claim.token, step=step, miou=float(step), per_class=per_class, pixel_accuracy=50.0)
        ids = rng.integers(0, 19, size=(16, 32)).astype(np.uint8)
        image = rng.integers(0, 255, size=(16, 32, 3), dtype=np.uint8)
        samples = [sample(name, image, ground_truth=ids, student=(ids + step) % 19)
                   for name in ("real_val_00000", "real_val_00099")]
        records.samples_record(run_id=run.pk, token=claim.token, step=step, samples=samples, classes=CITYSCAPES)
        path = run.folder / "checkpoints" / f"checkpoint_{step:07d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(checkpoint_bytes))
        records.checkpoint_record(run_id=run.pk, token=claim.token, step=step, path=path, kind="full")
    if finish:
        student = run.folder / "student.pt"
        student.write_bytes(rng.bytes(checkpoint_bytes // 3))
        records.checkpoint_record(run_id=run.pk, token=claim.token, step=last, path=student, kind="student")
        worker.run_finish(run_id=run.pk, token=claim.token, steps=last, final_miou=float(last), best_miou=float(last),
                            cancelled=False)
    run.refresh_from_db()
    return run
