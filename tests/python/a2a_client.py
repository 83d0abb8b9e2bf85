"""The agent bank over A2A, driven by the official Python SDK (PyPI `a2a-sdk`).

usage: a2a_client.py <gateway url> <scenario.json>

The scenario (written by tests/a2a_e2e.rs) names the user's key, a payer
whose payments above 5 need approval and a payee. Checks: the Agent Card
resolves and describes the payment skill; a payment message becomes a task
that completes; one needing approval is input-required, completes once the
user approves it over REST; a refused payment's task fails with the bank's
reason; a declined one (CancelTask) is canceled. Exits non-zero on the first
failure.
"""

import asyncio
import json
import sys

import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers.proto_helpers import new_data_message, new_text_message
from a2a.types.a2a_pb2 import (CancelTaskRequest, GetTaskRequest, Role, SendMessageRequest,
                               SubscribeToTaskRequest, TaskState)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def status_text(task):
    return "".join(p.text for p in task.status.message.parts)


async def send(client, data, text=None):
    message = new_text_message(text, role=Role.ROLE_USER) if text else new_data_message(data, role=Role.ROLE_USER)
    tasks = []
    async for event in client.send_message(SendMessageRequest(message=message)):
        if event.HasField("task"):
            tasks.append(event.task)
    check(len(tasks) == 1, f"one task answered, got {tasks}")
    return tasks[0]


async def main():
    url, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        s = json.load(f)
    headers = {"x-api-key": s["key"]}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        check(card.name == "agentbank", f"card name: {card.name}")
        check(any(k.id == "pay" for k in card.skills), f"the pay skill: {card.skills}")
        check(card.supported_interfaces[0].protocol_binding == "JSONRPC", "a JSON-RPC interface")
        check(card.capabilities.streaming, "the card offers streaming")
        client = await create_client(card, client_config=ClientConfig(streaming=False, httpx_client=http))
        streaming = await create_client(card, client_config=ClientConfig(streaming=True, httpx_client=http))

        pay = {"sender_agent_id": s["payer"], "receiver_agent_id": s["payee"], "amount": "2.5", "name": "over a2a"}
        task = await send(client, pay)
        check(task.status.state == TaskState.TASK_STATE_COMPLETED, f"instant payment completed: {task}")
        got = await client.get_task(GetTaskRequest(id=task.id))
        check(got.status.state == TaskState.TASK_STATE_COMPLETED, f"GetTask says completed: {got}")

        waiting = await send(client, {**pay, "amount": 10})
        check(waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, f"input-required: {waiting}")
        r = await http.post(f"{url}/payments/setApprove", json={"paymentId": waiting.id})
        check(r.status_code == 200, f"approved over REST: {r.status_code} {r.text}")
        got = await client.get_task(GetTaskRequest(id=waiting.id))
        check(got.status.state == TaskState.TASK_STATE_COMPLETED, f"completed after approval: {got}")

        refused = await send(client, {**pay, "amount": 1_000_000})
        check(refused.status.state == TaskState.TASK_STATE_FAILED, f"refused payment failed: {refused}")
        check("Insufficient balance" in status_text(refused), f"with the bank's reason: {status_text(refused)}")

        vague = await send(client, None, text="pay bob some money")
        check(vague.status.state == TaskState.TASK_STATE_FAILED and "data part" in status_text(vague),
              f"a text-only request says what is needed: {status_text(vague)}")

        # Streamed: the new task, then (subscribed) its updates until it ends.
        streamed = await send(streaming, {**pay, "amount": 8})
        check(streamed.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, f"streamed input-required: {streamed}")

        async def approve_soon():
            await asyncio.sleep(1.0)
            r = await http.post(f"{url}/payments/setApprove", json={"paymentId": streamed.id})
            check(r.status_code == 200, f"approved over REST: {r.status_code} {r.text}")

        approving = asyncio.create_task(approve_soon())
        states = []
        async for event in streaming.subscribe(SubscribeToTaskRequest(id=streamed.id)):
            if event.HasField("task"):
                states.append(event.task.status.state)
            elif event.HasField("status_update"):
                states.append(event.status_update.status.state)
        await approving
        check(states == [TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_COMPLETED],
              f"subscription: the task waiting, then completed, then the end: {states}")

        declined = await send(client, {**pay, "amount": 7})
        check(declined.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, f"input-required: {declined}")
        canceled = await client.cancel_task(CancelTaskRequest(id=declined.id))
        check(canceled.status.state == TaskState.TASK_STATE_CANCELED, f"CancelTask declines it: {canceled}")

    async with httpx.AsyncClient(headers={"x-api-key": "mag_wrong_wrong"}, timeout=30) as http:
        r = await http.post(f"{url}/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}})
        check(r.status_code == 401, f"a wrong key refused: {r.status_code}")
    print("a2a: ok")


if __name__ == "__main__":
    asyncio.run(main())
