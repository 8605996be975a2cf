"""Protocol conformance: real traffic to and from a running gateway, recorded and validated
against the OpenAPI spec shipped in the package (ember_edge/openapi.yaml, openapi-core)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from edge_digits import DigitsDevice, initial_model
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from ember_edge import protocol as p
from ember_edge.gateway import DeviceGateway, HmacDeviceTokens
from ember_edge.http_devices import HttpDeviceSimulator

SECRET = "spec-secret"
TOKENS = HmacDeviceTokens(SECRET)


class Recorder:
    """Every exchange: (method, url, request headers, request body, status, response
    headers, content type, response body)."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> tuple[int, str, bytes]:
        if json_body is not None:
            data = p.dumps(json_body)
            headers = {"Content-Type": p.JSON, **headers}
        async with session.post(url, headers=headers, params=params, data=data) as reply:
            body = await reply.read()
            with self.lock:
                self.exchanges.append(
                    {
                        "path": "/" + url.rsplit("/", 1)[1],
                        "host": url.rsplit("/", 1)[0],
                        "args": dict(params or {}),
                        "headers": dict(headers),
                        "body": data,
                        "status": reply.status,
                        "response_headers": dict(reply.headers),
                        "content_type": reply.content_type,
                        "response": body,
                    }
                )
            return reply.status, reply.content_type, body


def _spec() -> OpenAPI:
    path = resources.files("ember_edge").joinpath("openapi.yaml")
    return OpenAPI.from_file_path(str(path))  # the spec itself is validated here


def _validate(spec: OpenAPI, exchange: dict[str, Any]) -> None:
    headers = exchange["headers"]
    request = MockRequest(
        exchange["host"],
        "post",
        exchange["path"],
        args=exchange["args"],
        headers=headers,
        data=exchange["body"] or b"",
        content_type=headers.get("Content-Type", p.JSON) if exchange["body"] else p.JSON,
    )
    if exchange["status"] not in (400, 413):  # those requests were malformed on purpose
        spec.validate_request(request)
    response = MockResponse(
        exchange["response"],
        status_code=exchange["status"],
        headers=exchange["response_headers"],
        content_type=exchange["content_type"],
    )
    spec.validate_response(request, response)


def _auth(device: str, token: str | None = None) -> dict[str, str]:
    return {
        p.DEVICE_ID: device,
        "Authorization": f"Bearer {token or TOKENS.token_for(device)}",
        p.DEVICE_INFO: "app_name=test&platform=python",
    }


def test_recorded_traffic_of_every_status_conforms_to_the_openapi_spec(tmp_path: Path) -> None:
    spec = _spec()
    gw = DeviceGateway(
        "site-1",
        tmp_path,
        "job-1",
        authenticator="ember_edge.gateway:HmacDeviceTokens",
        authenticator_args={"secret": SECRET},
    )
    gw.begin()
    rec = Recorder()
    model = initial_model()

    async def main() -> None:
        url = gw.url
        async with aiohttp.ClientSession() as s:
            await rec.post(s, url + "job", _auth("dev-x", "forged"), json_body={})  # 401
            await rec.post(s, url + "job", {}, json_body={})  # 400: no device id
            await rec.post(s, url + "job", _auth("dev-1"), json_body={"capabilities": {}})
            await rec.post(s, url + "task", _auth("dev-1"), {"job_id": "job-1"}, {})  # NO_TASK
            await rec.post(s, url + "task", _auth("dev-1"), {"job_id": "old"}, {})  # NO_JOB
            await rec.post(s, url + "task", _auth("dev-1"), {"job_id": "job-1", "wait": "0.05"})
            asyncio.get_running_loop().call_later(0.05, gw.start, ["dev-1"], 0, model)
            _, _, raw = await rec.post(
                s, url + "task", _auth("dev-1"), {"job_id": "job-1", "wait": "5"}, {}
            )
            task = json.loads(raw)
            _, _, raw = await rec.post(
                s, url + "task", {**_auth("dev-1"), "Accept": p.SAFETENSORS}, {"job_id": "job-1"}
            )
            params = {"job_id": "job-1", "task_id": task["task_id"]}
            data, dtypes = p.params_to_json({k: v + 1 for k, v in model.items()})
            report = {
                "status": p.OK,
                "task_name": task["task_name"],
                "cookie": task["cookie"],
                "result": {
                    "kind": p.WEIGHTS,
                    "data": data,
                    "meta": {"weight": 4, "dtypes": dtypes},
                },
            }
            await rec.post(s, url + "result", _auth("dev-1"), params, report)  # OK
            await rec.post(s, url + "result", _auth("dev-1"), params, report)  # INVALID
            await rec.post(
                s,
                url + "result",
                {**_auth("dev-1"), "Content-Type": p.JSON},
                params,
                data=b"{broken",
            )  # 400
            gw.start(["dev-1"], 1, model)
            _, _, raw = await rec.post(s, url + "task", _auth("dev-1"), {"job_id": "job-1"}, {})
            second = json.loads(raw)["task_id"]
            await rec.post(
                s,
                url + "result",
                {**_auth("dev-1"), "Content-Type": p.SAFETENSORS},
                {"job_id": "job-1", "task_id": second},
                data=p.params_to_safetensors(
                    {k: np.zeros_like(v) for k, v in model.items()},
                    {"status": p.OK, "result": {"kind": p.WEIGHT_DIFF, "meta": {"weight": 1}}},
                ),
            )
            await asyncio.get_running_loop().run_in_executor(None, gw.shutdown)
            await rec.post(s, url + "job", _auth("dev-1"), json_body={})  # refused: closed?

    try:
        asyncio.run(main())
    except aiohttp.ClientConnectionError:
        pass  # the last request after shutdown: the gateway is closed, nothing to record
    finally:
        gw.shutdown()
    seen = {(e["path"], e["status"], _status(e)) for e in rec.exchanges}
    for expected in [
        ("/job", 401, p.UNAUTHORIZED),
        ("/job", 400, p.INVALID_REQUEST),
        ("/job", 200, p.OK),
        ("/task", 200, p.NO_TASK),
        ("/task", 200, p.NO_JOB),
        ("/task", 200, p.OK),
        ("/task", 200, "safetensors"),
        ("/result", 200, p.OK),
        ("/result", 200, p.INVALID),
        ("/result", 400, p.INVALID_REQUEST),
    ]:
        assert expected in seen, f"{expected} not recorded: {sorted(seen)}"
    for exchange in rec.exchanges:
        _validate(spec, exchange)


def _status(exchange: dict[str, Any]) -> str:
    if exchange["content_type"] == p.SAFETENSORS:
        return "safetensors"
    return str(json.loads(exchange["response"])["status"])


@pytest.mark.parametrize("safetensors", [False, True], ids=["json", "safetensors"])
def test_the_http_simulators_traffic_conforms_to_the_openapi_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, safetensors: bool
) -> None:
    spec = _spec()
    gw = DeviceGateway(
        "site-1",
        tmp_path,
        "job-1",
        authenticator="ember_edge.gateway:HmacDeviceTokens",
        authenticator_args={"secret": SECRET},
    )
    gw.begin()
    rec = Recorder()

    async def post(self: Any, session: Any, url: str, headers: Any, params: Any = None,
                   json_body: Any = None, data: Any = None) -> Any:  # fmt: skip
        self.stats["requests"] += 1
        return await rec.post(session, url, dict(headers), params, json_body, data)

    monkeypatch.setattr(HttpDeviceSimulator, "_post", post)
    sim = HttpDeviceSimulator(
        tmp_path,
        DigitsDevice,
        12,
        token=lambda d: TOKENS.token_for(d) if d != "dev-0" else None,
        safetensors=safetensors,
        wait=1.0,
    )
    sim.start()
    try:
        deadline = time.monotonic() + 10
        while len(gw.device_ids) < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(gw.device_ids) == 11  # dev-0 sent no token: refused
        gw.start(list(gw.device_ids), 0, initial_model())
        sums = gw.collect(time.monotonic() + 10)
        assert sorted(sums[0].devices) == sorted(gw.device_ids)
    finally:
        gw.shutdown()
        sim.stop()
        stats = sim.join(10)
    assert stats["refused"] == 1
    assert stats["results_taken"] == 11
    assert len(rec.exchanges) >= 12 + 11 * 2  # /job, a task and a result each
    for exchange in rec.exchanges:
        _validate(spec, exchange)


def test_an_executorch_task_and_result_in_nvflares_format_conform_and_are_summed(
    tmp_path: Path,
) -> None:
    import base64

    spec = _spec()
    gw = DeviceGateway("site-1", tmp_path, "job-1")
    gw.begin()
    rec = Recorder()
    model = initial_model()
    pte = b"\x00fake training .pte\xff" * 3

    async def main() -> dict[str, Any]:
        async with aiohttp.ClientSession() as s:
            await rec.post(s, gw.url + "job", {p.DEVICE_ID: "phone-1"}, json_body={})
            gw.start(["phone-1"], 0, model, pte)
            _, _, raw = await rec.post(s, gw.url + "task", {p.DEVICE_ID: "phone-1"}, {}, {})
            task = json.loads(raw)
            diff = {  # what NVFlare's ETTaskProcessor sends: flat numbers and their sizes
                k: {"data": np.full(v.shape, 0.5).ravel().tolist(), "sizes": list(v.shape)}
                for k, v in model.items()
            }
            report = {
                "status": p.OK,
                "task_name": task["task_name"],
                "cookie": task["cookie"],
                "result": {
                    "kind": p.ET_TENSOR_DIFF,
                    "data": diff,
                    "meta": task["task_data"]["meta"],
                },
            }
            await rec.post(
                s, gw.url + "result", {p.DEVICE_ID: "phone-1"}, {"task_id": task["task_id"]}, report
            )
            return task

    try:
        task = asyncio.run(main())
        sums = gw.collect(time.monotonic() + 1.0)
    finally:
        gw.shutdown()
    data = task["task_data"]
    assert base64.b64decode(data["data"]) == pte
    assert data["meta"]["model_buffer_type"] == "executorch"
    assert data["meta"]["model_buffer_encoding"] == "base64"
    for k, v in model.items():
        np.testing.assert_array_equal(sums[0].sums[k], np.full(v.shape, 0.5))
    for exchange in rec.exchanges:
        _validate(spec, exchange)


def test_requests_shaped_as_nvflares_device_api_sends_them_are_served_and_conform(
    tmp_path: Path,
) -> None:
    """The bodies, query parameters and headers of NVFlare 2.7's FegApi (its simulator's
    device client): /job with job_name None, /task with the cookie, /result with status,
    task_name, result (a DXO dict) and cookie, the user info as a query string."""
    from urllib.parse import urlencode

    spec = _spec()
    gw = DeviceGateway("site-1", tmp_path, "job-1")
    gw.begin()
    rec = Recorder()
    model = initial_model()
    headers = {
        "Content-Type": p.JSON,
        p.DEVICE_ID: "android-7",
        p.DEVICE_INFO: urlencode({"app_name": "demo", "app_version": "1.0", "platform": "android"}),
        p.USER_INFO: urlencode({"user_id": "u1", "user_name": "someone"}),
    }

    async def main() -> list[str]:
        statuses = []
        async with aiohttp.ClientSession() as s:
            body = {"job_name": None, "capabilities": {"methods": ["train"]}}
            _, _, raw = await rec.post(s, gw.url + "job", headers, {}, body)
            job = json.loads(raw)
            statuses.append(job["status"])
            gw.start(["android-7"], 0, model)
            _, _, raw = await rec.post(s, gw.url + "task", headers, {"job_id": job["job_id"]}, {})
            task = json.loads(raw)
            statuses.append(task["status"])
            trained = {k: (v + 0.25).tolist() for k, v in model.items()}
            report = {
                "status": p.OK,
                "task_name": task["task_name"],
                "result": {"kind": p.WEIGHTS, "data": trained, "meta": {"num_samples": 8}},
                "cookie": task["cookie"],
            }
            params = {"job_id": job["job_id"], "task_id": task["task_id"]}
            _, _, raw = await rec.post(s, gw.url + "result", headers, params, report)
            statuses.append(json.loads(raw)["status"])
            _, _, raw = await rec.post(
                s, gw.url + "task", headers, {"job_id": job["job_id"]}, {"cookie": task["cookie"]}
            )
            statuses.append(json.loads(raw)["status"])
        return statuses

    try:
        assert asyncio.run(main()) == [p.OK, p.OK, p.OK, p.NO_TASK]
        sums = gw.collect(time.monotonic() + 1.0)
    finally:
        gw.shutdown()
    assert sums[0].weight == 8.0  # NVFlare's num_samples is the weight
    for k, v in model.items():
        np.testing.assert_allclose(sums[0].sums[k], np.full(v.shape, 0.25 * 8.0))
    for exchange in rec.exchanges:
        _validate(spec, exchange)
