"""The Client API outside a job, and its per-thread sessions."""

from __future__ import annotations

import pytest

import ember.client as flare
from ember.client.session import ClientAPIError, ClientSession
from ember.common.messages import Task, TaskResult


def test_client_api_outside_a_job_explains_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBER_CLIENT_ENDPOINT", raising=False)
    with pytest.raises(ClientAPIError, match="was not started by Ember"):
        flare.init()
    with pytest.raises(ClientAPIError, match="no Ember client session"):
        flare.receive()


class _Link:
    def __init__(self, tasks: list[Task | str]) -> None:
        self.tasks = tasks
        self.results: list[TaskResult] = []

    def get_task(self, wait: float) -> Task | str | None:
        return self.tasks.pop(0) if self.tasks else "END"

    def submit_result(self, result: TaskResult) -> bool:
        self.results.append(result)
        return True

    def log_metrics(self, records: list) -> None:  # type: ignore[type-arg]
        raise AssertionError("not used")

    def report_failure(self, reason: str) -> None:
        raise AssertionError("not used")

    def report_done(self) -> None:
        raise AssertionError("not used")


def test_send_without_receive_is_refused() -> None:
    session = ClientSession("site-1", "job", _Link([]), {}, 1.0)
    with pytest.raises(ClientAPIError, match=r"call flare\.receive\(\) first"):
        session.send(flare.FLModel(params={}))


def test_session_resolves_per_thread_and_system_info() -> None:
    from ember.client.api import bind_session

    task = Task("train", "t1", flare.FLModel(params={"w": 1.0}, current_round=0))
    link = _Link([task])
    bind_session(ClientSession("site-7", "job-42", link, {"train_args": "-x"}, 1.0))
    try:
        assert flare.system_info() == {"site_name": "site-7", "job_id": "job-42"}
        assert flare.get_config()["train_args"] == "-x"
        assert flare.is_running()
        assert flare.is_train()
        model = flare.receive()
        assert model is not None
        flare.send(flare.FLModel(params={"w": 2.0}))
        assert [r.task_id for r in link.results] == ["t1"]
        assert not flare.is_running()
        assert flare.receive() is None
    finally:
        bind_session(None)


def test_flmodel_params_type_is_checked() -> None:
    assert flare.FLModel(params_type="DIFF").params_type is flare.ParamsType.DIFF
    with pytest.raises(ValueError, match="params_type must be one of"):
        flare.FLModel(params_type="HALF")
