"""The agent bank over MCP, driven by the official Python SDK (PyPI `mcp`).

usage: mcp_client.py <http|stdio> <gateway url> <scenario.json>

The scenario (written by tests/mcp_e2e.rs) names the user's key, two agents
of the user (a payer whose payments above 5 need approval, a payee), another
user's agent, and for stdio the agentbank binary. Checks: tools listed with
schemas; a balance read; a payment; a payment needing approval reports it and
completes once approved; a wrong or missing key is refused; another user's
agent is invisible. Exits non-zero, saying why, on the first failure.
"""

import asyncio
import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def is_error(result):
    # mcp 2.x names fields in snake case, 1.x in camel case.
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


async def call(session, name, args):
    result = await session.call_tool(name, args)
    return result, text_of(result)


async def scenario(session, s):
    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    for needed in ["get_agent", "list_agents", "create_payment", "approve_payment",
                   "decline_payment", "get_payment", "list_payments", "deposit", "withdraw",
                   "savings_deposit", "savings_withdraw", "savings_positions",
                   "interest_calculator", "wallet_balance"]:
        check(needed in names, f"tool {needed} listed (got {sorted(names)})")
    for t in tools:
        schema = getattr(t, "input_schema", None) or getattr(t, "inputSchema", None)
        check(schema.get("type") == "object" and t.description, f"{t.name} has a schema and a description")

    result, body = await call(session, "get_agent", {"agent_id": s["payer"]})
    check(not is_error(result), f"get_agent: {body}")
    check(json.loads(body)["balance"] == "100", f"payer's balance 100: {body}")

    result, body = await call(session, "list_agents", {})
    check(not is_error(result) and len(json.loads(body)) == 2, f"list_agents: {body}")

    # An instant payment, idempotent by its key.
    pay = {"sender_agent_id": s["payer"], "receiver_agent_id": s["payee"], "amount": "2.5",
           "name": "over mcp", "idempotency_key": f"mcp-{s['transport']}-1"}
    for _ in range(2):
        result, body = await call(session, "create_payment", pay)
        check(not is_error(result), f"create_payment: {body}")
        payment = json.loads(body)
        check(payment["status"] == "Confirmed", f"instant payment confirmed: {body}")
    result, body = await call(session, "get_agent", {"agent_id": s["payer"]})
    check(json.loads(body)["balance"] == "97.5", f"paid once: {body}")
    unkeyed = {k: v for k, v in pay.items() if k != "idempotency_key"}

    # Above the approval threshold: it waits, and completes once approved.
    result, body = await call(session, "create_payment", {**unkeyed, "amount": 10})
    check(not is_error(result), f"create_payment needing approval: {body}")
    waiting = json.loads(body)
    check(waiting["approvalstatus"] == "Waiting for Sender Approval" and waiting["status"] == "New",
          f"the payment reports it waits for approval: {body}")
    result, body = await call(session, "approve_payment", {"payment_id": waiting["id"]})
    check(not is_error(result), f"approve_payment: {body}")
    result, body = await call(session, "get_payment", {"payment_id": waiting["id"]})
    check(json.loads(body)["approvalstatus"] == "Approved", f"approved: {body}")

    # Refusals are tool errors with the API's message.
    result, body = await call(session, "create_payment", {**unkeyed, "amount": 1_000_000})
    check(is_error(result) and "Insufficient balance" in body, f"too large a payment refused: {body}")
    result, body = await call(session, "get_agent", {"agent_id": s["foreign"]})
    check(is_error(result) and body == "Agent not found", f"another user's agent invisible: {body}")
    result, body = await call(session, "deposit", {"agent_id": s["foreign"], "amount": 1})
    check(is_error(result) and body == "Agent not found", f"another user's agent not fundable: {body}")

    result, body = await call(session, "interest_calculator", {"amount": 1000, "days": 365})
    check(not is_error(result) and "interestEarned" in json.loads(body), f"calculator: {body}")


async def over_http(url, s, key):
    client = create_mcp_http_client(headers={"x-api-key": key})
    async with streamable_http_client(f"{url}/mcp", http_client=client) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            await scenario(session, s)


async def refused_over_http(url, key):
    """A wrong or missing key never gets a session."""
    try:
        headers = {"x-api-key": key} if key else {}
        client = create_mcp_http_client(headers=headers)
        with anyio.fail_after(20):
            async with streamable_http_client(f"{url}/mcp", http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
    except BaseException as e:  # the SDK raises its own error types (and groups of them)
        return str(e) or type(e).__name__
    raise SystemExit(f"FAILED: key {key!r} was accepted")


async def over_stdio(url, s, key):
    params = StdioServerParameters(
        command=s["binary"], args=["mcp"],
        env={"AGENTBANK_URL": url, "AGENTBANK_API_KEY": key, "RUST_LOG": "warn"},
    )
    async with stdio_client(params) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            await scenario(session, s)


async def main():
    transport, url, path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path) as f:
        s = json.load(f)
    s["transport"] = transport
    if transport == "http":
        await over_http(url, s, s["key"])
        await refused_over_http(url, "mag_wrong_wrong")
        await refused_over_http(url, None)
    else:
        await over_stdio(url, s, s["key"])
        # A wrong key: the server starts, every tool call is refused.
        params = StdioServerParameters(command=s["binary"], args=["mcp"],
                                       env={"AGENTBANK_URL": url, "AGENTBANK_API_KEY": "mag_wrong_wrong"})
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                result, body = await call(session, "get_agent", {"agent_id": s["payer"]})
                check(is_error(result) and body == "Invalid or missing API key", f"wrong key refused: {body}")
    print(f"mcp {transport}: ok")


if __name__ == "__main__":
    asyncio.run(main())
