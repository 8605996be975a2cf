"""ember_edge.gateway: the HTTP device gateway on its own (no job), and rendezvous routing."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ember_edge import protocol as p
from ember_edge.gateway import DeviceGateway, HmacDeviceTokens
from ember_edge.routing import assign, gateway_for

SECRET = "test-secret"
TOKENS = HmacDeviceTokens(SECRET)


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"w": rng.normal(size=(8, 3)) / 3.0, "b": rng.normal(size=3)}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[DeviceGateway]:
    gw = DeviceGateway(
        "site-1",
        tmp_path,
        "job-1",
        authenticator="ember_edge.gateway:HmacDeviceTokens",
        authenticator_args={"secret": SECRET},
    )
    gw.begin()
    yield gw
    gw.shutdown()


def _headers(device: str, token: bool = True) -> dict[str, str]:
    out = {p.DEVICE_ID: device}
    if token:
        out["Authorization"] = f"Bearer {TOKENS.token_for(device)}"
    return out


async def _post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, str, bytes]:
    async with session.post(url, headers=headers, **kwargs) as reply:
        return reply.status, reply.content_type, await reply.read()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_device_without_a_valid_token_is_refused_with_401_and_never_counted(
    gateway: DeviceGateway,
) -> None:
    async def main() -> list[tuple[int, dict[str, Any]]]:
        out = []
        async with aiohttp.ClientSession() as s:
            for headers in (
                _headers("dev-a", token=False),
                {p.DEVICE_ID: "dev-a", "Authorization": "Bearer not-the-token"},
                {p.DEVICE_ID: "dev-a", "Authorization": f"Bearer {TOKENS.token_for('dev-b')}"},
            ):
                for path in ("job", "task", "result?task_id=x"):
                    status, _, raw = await _post(s, gateway.url + path, headers, json={})
                    out.append((status, json.loads(raw)))
            # NVFlare's way: the token in X-Flare-User-Info is accepted too
            user_info = f"user_id=u&auth_token={TOKENS.token_for('dev-c')}"
            status, _, raw = await _post(
                s, gateway.url + "job", {p.DEVICE_ID: "dev-c", p.USER_INFO: user_info}, json={}
            )
            out.append((status, json.loads(raw)))
        return out

    replies = run(main())
    assert [s for s, _ in replies[:-1]] == [401] * 9
    assert {b["status"] for _, b in replies[:-1]} == {p.UNAUTHORIZED}
    assert replies[-1] == (200, replies[-1][1])
    assert replies[-1][1]["status"] == p.OK
    assert gateway.device_ids == ["dev-c"]  # the refused device was never registered
    assert gateway.stats["refused"] == 9
    assert gateway.stats["registered"] == 1


def test_a_long_poll_returns_as_soon_as_a_task_arrives(gateway: DeviceGateway) -> None:
    async def main() -> tuple[float, dict[str, Any], float, dict[str, Any]]:
        async with aiohttp.ClientSession() as s:
            await _post(s, gateway.url + "job", _headers("dev-1"), json={})
            # nothing for it: a short poll answers at once, a long poll after its wait
            t0 = time.monotonic()
            _, _, raw = await _post(
                s, gateway.url + "task", _headers("dev-1"), params={"wait": "0.2"}, json={}
            )
            idle = time.monotonic() - t0, json.loads(raw)
            loop = asyncio.get_running_loop()
            loop.call_later(0.15, gateway.start, ["dev-1"], 0, _model())
            t0 = time.monotonic()
            _, _, raw = await _post(
                s, gateway.url + "task", _headers("dev-1"), params={"wait": "10"}, json={}
            )
            return idle[0], idle[1], time.monotonic() - t0, json.loads(raw)

    idle_s, idle, got_s, got = run(main())
    assert idle["status"] == p.NO_TASK
    assert idle["retry_wait"] == 0
    assert 0.2 <= idle_s < 2.0
    assert got["status"] == p.OK
    assert 0.15 <= got_s < 2.0  # well before its 10 s wait
    assert got["cookie"] == {p.MODEL_VERSION: 0, p.DEVICE_SELECTION_ID: got["task_id"]}
    assert got["task_data"]["kind"] == p.WEIGHTS


def test_a_safetensors_body_equals_the_json_body_bit_for_bit(gateway: DeviceGateway) -> None:
    model = _model()
    devices = ["dev-json", "dev-st"]

    async def main() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
        async with aiohttp.ClientSession() as s:
            for d in devices:
                await _post(s, gateway.url + "job", _headers(d), json={})
            gateway.start(devices, 3, model)
            _, ctype_j, raw_j = await _post(s, gateway.url + "task", _headers("dev-json"))
            body = json.loads(raw_j)
            meta = body["task_data"]["meta"]
            as_json = p.params_from_json(body["task_data"]["data"], meta["dtypes"])
            headers = {**_headers("dev-st"), "Accept": f"{p.SAFETENSORS}, {p.JSON};q=0.5"}
            _, ctype_s, raw_s = await _post(s, gateway.url + "task", headers)
            as_st, envelope = p.params_from_safetensors(raw_s)
            assert envelope["task_data"]["meta"][p.MODEL_VERSION] == 3
            # each device sends the same (odd) update, one as JSON and one as safetensors
            update = {k: v * np.pi + 1e-300 for k, v in model.items()}
            result = {"kind": p.WEIGHT_DIFF, "meta": {"weight": 2.5}}
            data, dtypes = p.params_to_json(update)
            j = {
                "status": p.OK,
                "result": {**result, "data": data, "meta": {"weight": 2.5, "dtypes": dtypes}},
            }
            status_j, _, _ = await _post(
                s,
                gateway.url + "result",
                {**_headers("dev-json"), "Content-Type": p.JSON},
                params={"task_id": body["task_id"]},
                data=p.dumps(j),
            )
            status_s, _, _ = await _post(
                s,
                gateway.url + "result",
                {**_headers("dev-st"), "Content-Type": p.SAFETENSORS},
                params={"task_id": envelope["task_id"]},
                data=p.params_to_safetensors(update, {"status": p.OK, "result": result}),
            )
            assert (status_j, status_s) == (200, 200)
            return as_json, as_st, f"{ctype_j} {ctype_s}"

    as_json, as_st, ctypes = run(main())
    assert ctypes == f"{p.JSON} {p.SAFETENSORS}"
    for name, value in model.items():
        assert as_json[name].dtype == as_st[name].dtype == value.dtype
        assert as_json[name].tobytes() == as_st[name].tobytes() == value.tobytes()
    sums = gateway.collect(time.monotonic() + 1.0)
    held = sums[3]
    assert held.weight == 5.0
    assert sorted(held.devices) == devices
    for name, value in model.items():
        one = (value * np.pi + 1e-300) * 2.5
        assert (one + one).tobytes() == held.sums[name].tobytes()  # both arrived identical


def test_results_for_unknown_replaced_or_foreign_tasks_are_invalid_and_not_counted(
    gateway: DeviceGateway,
) -> None:
    model = _model()

    async def main() -> list[str]:
        statuses = []
        async with aiohttp.ClientSession() as s:
            for d in ("dev-1", "dev-2"):
                await _post(s, gateway.url + "job", _headers(d), json={})
            gateway.start(["dev-1", "dev-2"], 0, model)
            _, _, raw = await _post(s, gateway.url + "task", _headers("dev-1"))
            first = json.loads(raw)["task_id"]
            gateway.start(["dev-1"], 1, model)  # selected again for a newer version
            data, _ = p.params_to_json(model)
            body = {"result": {"kind": p.WEIGHTS, "data": data}}
            for device, task_id, job in (
                ("dev-1", first, "job-1"),  # replaced
                ("dev-1", "nope", "job-1"),  # unknown
                ("dev-2", first, "job-1"),  # another device's
                ("dev-1", first, "other-job"),  # another job's
            ):
                _, _, raw = await _post(
                    s,
                    gateway.url + "result",
                    _headers(device),
                    params={"task_id": task_id, "job_id": job},
                    json=body,
                )
                statuses.append(json.loads(raw)["status"])
        return statuses

    assert run(main()) == [p.INVALID] * 4
    assert gateway.stats["invalid_results"] == 4
    assert gateway.stats["answered"] == 0
    assert gateway.collect(time.monotonic()) == {}


def test_malformed_requests_get_400_invalid_request(gateway: DeviceGateway) -> None:
    model = _model()

    async def main() -> list[tuple[int, str]]:
        out = []
        async with aiohttp.ClientSession() as s:
            status, _, raw = await _post(s, gateway.url + "job", {}, json={})
            out.append((status, json.loads(raw)["status"]))
            await _post(s, gateway.url + "job", _headers("dev-1"), json={})
            gateway.start(["dev-1"], 0, model)
            _, _, raw = await _post(s, gateway.url + "task", _headers("dev-1"))
            task_id = json.loads(raw)["task_id"]
            for body in (
                b"not json",
                p.dumps({"result": {"kind": p.WEIGHTS, "data": {"w": [[1.0]]}}}),  # shapes
                p.dumps({"result": {"kind": "GRADIENTS", "data": {}}}),
                p.dumps({"result": {"kind": p.WEIGHT_DIFF, "data": {}, "meta": {"weight": -1}}}),
            ):
                status, _, raw = await _post(
                    s,
                    gateway.url + "result",
                    {**_headers("dev-1"), "Content-Type": p.JSON},
                    params={"task_id": task_id},
                    data=body,
                )
                out.append((status, json.loads(raw)["status"]))
            status, _, raw = await _post(
                s, gateway.url + "task", _headers("dev-1"), params={"wait": "-1"}
            )
            out.append((status, json.loads(raw)["status"]))
        return out

    assert run(main()) == [(400, p.INVALID_REQUEST)] * 6
    assert gateway.outstanding == 1  # the task is still the device's


def test_at_the_jobs_end_held_polls_and_new_requests_answer_done(tmp_path: Path) -> None:
    gw = DeviceGateway("site-1", tmp_path, "job-1")
    gw.begin()

    async def main() -> tuple[str, float]:
        async with aiohttp.ClientSession() as s:
            await _post(s, gw.url + "job", _headers("dev-1", token=False), json={})
            loop = asyncio.get_running_loop()
            ended = loop.run_in_executor(None, lambda: (time.sleep(0.1), gw.shutdown()))
            t0 = time.monotonic()
            _, _, raw = await _post(
                s, gw.url + "task", _headers("dev-1", token=False), params={"wait": "10"}
            )
            await ended
            return json.loads(raw)["status"], time.monotonic() - t0

    status, seconds = run(main())
    assert status == p.DONE
    assert seconds < 5.0


def test_https_with_a_self_signed_certificate_named_in_gateway_json(tmp_path: Path) -> None:
    gw = DeviceGateway("site-1", tmp_path, "job-1", tls=True)
    gw.begin()
    try:
        info = json.loads((tmp_path / "gateway.json").read_text())
        assert info["url"].startswith("https://127.0.0.1:")
        assert info["tls"] is True
        ctx = ssl.create_default_context(cafile=info["cert"])

        async def main() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    info["url"] + "job", headers=_headers("dev-1", False), json={}, ssl=ctx
                ) as reply,
            ):
                return dict(await reply.json())

        assert run(main())["status"] == p.OK
        assert oct((tmp_path / "gateway-tls" / "gateway.key").stat().st_mode & 0o777) == "0o600"
    finally:
        gw.shutdown()


def test_adding_a_fifth_gateway_moves_about_a_fifth_of_the_devices_and_only_to_it() -> None:
    devices = [f"dev-{i}" for i in range(20_000)]
    four = [f"site-{i}" for i in range(1, 5)]
    five = [*four, "site-5"]
    before = {d: gateway_for(d, four) for d in devices}
    after = {d: gateway_for(d, five) for d in devices}
    moved = [d for d in devices if before[d] != after[d]]
    assert all(after[d] == "site-5" for d in moved)  # nothing moves between old gateways
    assert abs(len(moved) / len(devices) - 1 / 5) < 0.02
    sizes = [len(v) for v in assign(devices, four).values()]
    assert max(sizes) / min(sizes) < 1.1  # balanced
    assert gateway_for("dev-1", list(reversed(four))) == before["dev-1"]  # order-free


def test_a_site_with_a_startup_kit_serves_https_with_the_kits_gateway_certificate(
    tmp_path: Path,
) -> None:
    from ember_edge.gateway import _self_signed

    kit = tmp_path / "site-1"
    (kit / "startup").mkdir(parents=True)
    (kit / "startup" / "kit.json").write_text("{}")
    cert, key = _self_signed(tmp_path / "provisioned", "127.0.0.1")
    cert.rename(kit / "startup" / "gateway.crt")
    key.rename(kit / "startup" / "gateway.key")
    site_dir = kit / "jobs" / "job-7" / "workspace"  # where PocEnv/ProdEnv sites work
    gw = DeviceGateway("site-1", site_dir, "job-7")  # tls=None: HTTPS, the site has a kit
    gw.begin()
    try:
        info = json.loads((site_dir / "gateway.json").read_text())
        assert info["tls"] is True
        assert info["cert"] == str(kit / "startup" / "gateway.crt")
        ctx = ssl.create_default_context(cafile=info["cert"])

        async def main() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as s,
                s.post(info["url"] + "job", headers=_headers("d", False), json={}, ssl=ctx) as r,
            ):
                return dict(await r.json())

        assert run(main())["job_id"] == "job-7"
    finally:
        gw.shutdown()
    assert not (site_dir / "gateway-tls").exists()  # no certificate of its own was made


class NeverAnswers:
    """An async authenticator whose identity service never answers."""

    async def authenticate(self, device_id: str, token: Any, headers: Any) -> bool:
        await asyncio.sleep(3600)
        return True


def test_an_authenticator_without_a_verdict_in_time_refuses_the_device(tmp_path: Path) -> None:
    from ember.config import Config, use_config

    with use_config(Config({"edge.gateway_auth_timeout": 0.2})):
        gw = DeviceGateway("site-1", tmp_path, "job-1", authenticator=f"{__name__}:NeverAnswers")
    gw.begin()
    try:

        async def main() -> tuple[int, float]:
            t0 = time.monotonic()
            async with aiohttp.ClientSession() as s:
                status, _, _ = await _post(s, gw.url + "job", _headers("dev-1"), json={})
            return status, time.monotonic() - t0

        status, seconds = run(main())
        assert status == 401
        assert 0.2 <= seconds < 3.0
        assert gw.device_ids == []
    finally:
        gw.shutdown()
