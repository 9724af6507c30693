// The smoke suite of the TypeScript client: openapi-fetch over the types openapi-typescript
// generated from the hub's served spec (module `aether-hub-api`, arranged by the tsconfig that
// tests/clients/test_typescript_client.py writes). Every call goes through the typed client.
// Run against a live hub: AETHER_HUB_URL and AETHER_TOKEN (an admin key) in the environment.
// Each check prints `ok - <name>`; the first failed expectation prints `not ok - <name>` with
// the reason and ends the run with exit code 1.

import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import createClient from "openapi-fetch";
import type { components, paths } from "aether-hub-api";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];
type Task = Schemas["Task"];

function setting(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
}

// The JSON media types: application/json for the data, application/problem+json for the errors
// (`${string}/json` alone misses the `+json` suffix and types an error as its content map).
// send_message's other answer, text/event-stream, is not what these calls ask for.
type Json = `${string}/json` | `${string}/${string}+json`;
const hub = createClient<paths, Json>({
  baseUrl: setting("AETHER_HUB_URL"),
  headers: { Authorization: `Bearer ${setting("AETHER_TOKEN")}` },
});

/** What every openapi-fetch call answers: data on success, the parsed error body otherwise. */
interface Answer<D, E> {
  data?: D;
  error?: E;
  response: Response;
}

function expectData<D, E>(answer: Answer<D, E>, status: number, what: string): D {
  const { data, error, response } = answer;
  const problem = JSON.stringify(error);
  assert.equal(response.status, status, `${what}: HTTP ${response.status} ${problem}`);
  assert.ok(data !== undefined, `${what}: no body`);
  return data;
}

function expectProblem<D>(
  answer: Answer<D, Problem>,
  status: number,
  code: string,
  title: string,
): Problem {
  const { error, response } = answer;
  assert.equal(response.status, status, `expected ${status} ${code}, got ${response.status}`);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.ok(error !== undefined, "a problem without a body");
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  assert.equal(error.title, title);
  assert.match(error.type, /^https:\/\//);
  assert.match(error.request_id, /^req_/);
  assert.equal(error.request_id, response.headers.get("x-request-id"));
  return error;
}

function etagOf(response: Response): string {
  const etag = response.headers.get("etag");
  assert.ok(etag, `no ETag on ${response.url}`);
  return etag;
}

/** Read the task until it leaves the given statuses (bounded: 20 s). */
async function pollTask(id: string, whileIn: Task["status"][]): Promise<Task> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const task = expectData(
      await hub.GET("/api/v1/tasks/{task_id}", { params: { path: { task_id: id } } }),
      200,
      "get_task",
    );
    if (!whileIn.includes(task.status)) return task;
    assert.ok(Date.now() < deadline, `task ${id} still ${task.status} after 20 s`);
    await sleep(50);
  }
}

async function createAgent(body: Schemas["AgentCreate"]): Promise<Schemas["Agent"]> {
  return expectData(await hub.POST("/api/v1/agents", { body }), 201, "create_agent");
}

const checks: [string, () => Promise<void>][] = [];
const check = (name: string, run: () => Promise<void>) => checks.push([name, run]);

const AGENT_IDS = ["ts-a1", "ts-a2", "ts-a3", "ts-a4", "ts-a5"];

check("agents are created and paged by cursor", async () => {
  for (const id of AGENT_IDS) {
    const agent = await createAgent({ id, name: `Agent ${id}`, model: "builtin/echo" });
    assert.equal(agent.id, id);
    assert.equal(agent.version, 1);
    assert.equal(agent.model, "builtin/echo");
  }
  const seen: string[] = [];
  const pages: number[] = [];
  let cursor: string | null = null;
  do {
    const query: { limit: number; cursor?: string } =
      cursor === null ? { limit: 2 } : { limit: 2, cursor };
    const page: Schemas["AgentList"] = expectData(
      await hub.GET("/api/v1/agents", { params: { query } }),
      200,
      "list_agents",
    );
    pages.push(page.items.length);
    seen.push(...page.items.map((agent) => agent.id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  assert.deepEqual(seen, AGENT_IDS);
  assert.deepEqual(pages, [2, 2, 1]);
});

check("an agent is patched with If-Match; a stale ETag is a 412", async () => {
  const path = { agent_id: "ts-a1" };
  const read = await hub.GET("/api/v1/agents/{agent_id}", { params: { path } });
  const before = expectData(read, 200, "get_agent");
  const first = etagOf(read.response);
  const patched = await hub.PATCH("/api/v1/agents/{agent_id}", {
    params: { path, header: { "If-Match": first } },
    body: { description: "Patched by the TypeScript client", temperature: 0.5 },
  });
  const agent = expectData(patched, 200, "update_agent");
  assert.equal(agent.description, "Patched by the TypeScript client");
  assert.equal(agent.temperature, 0.5);
  assert.equal(agent.version, before.version + 1);
  assert.equal(agent.config_version, before.config_version + 1);
  const second = etagOf(patched.response);
  assert.notEqual(second, first);
  const stale = await hub.PATCH("/api/v1/agents/{agent_id}", {
    params: { path, header: { "If-Match": first } },
    body: { description: "A lost update" },
  });
  expectProblem(stale, 412, "etag_mismatch", "Precondition Failed");
  const after = expectData(
    await hub.GET("/api/v1/agents/{agent_id}", { params: { path } }),
    200,
    "get_agent",
  );
  assert.equal(after.description, "Patched by the TypeScript client");
});

check("a session's message gets a reply, and its turn is listed", async () => {
  const session = expectData(
    await hub.POST("/api/v1/sessions", { body: { agent_id: "ts-a2", title: "Smoke" } }),
    201,
    "create_session",
  );
  assert.equal(session.agent_id, "ts-a2");
  assert.equal(session.status, "open");
  const path = { session_id: session.id };
  const reply = expectData(
    await hub.POST("/api/v1/sessions/{session_id}/messages", {
      params: { path },
      body: { content: "Hello from TypeScript" },
    }),
    200,
    "send_message",
  );
  assert.equal(reply.message.role, "assistant");
  assert.equal(reply.message.content, "Echo: Hello from TypeScript");
  assert.equal(reply.message.turn_id, reply.turn.id);
  assert.equal(reply.turn.status, "completed");
  const messages = expectData(
    await hub.GET("/api/v1/sessions/{session_id}/messages", { params: { path } }),
    200,
    "list_messages",
  );
  assert.deepEqual(
    messages.items.map((m) => [m.role, m.content]),
    [
      ["user", "Hello from TypeScript"],
      ["assistant", "Echo: Hello from TypeScript"],
    ],
  );
  const turns = expectData(
    await hub.GET("/api/v1/sessions/{session_id}/turns", { params: { path } }),
    200,
    "list_session_turns",
  );
  assert.deepEqual(
    turns.items.map((t) => [t.id, t.user_message_id, t.assistant_message_id, t.status]),
    [[reply.turn.id, messages.items[0]?.id, reply.message.id, "completed"]],
  );
  assert.equal(turns.next_cursor, null);
});

check("a task is polled to completion", async () => {
  const queued = expectData(
    await hub.POST("/api/v1/tasks", { body: { agent_id: "ts-a3", description: "Hello" } }),
    201,
    "create_task",
  );
  assert.equal(queued.agent_id, "ts-a3");
  const done = await pollTask(queued.id, ["pending", "running"]);
  assert.equal(done.status, "completed", JSON.stringify(done.error));
  assert.equal(done.result, "Echo: Hello");
  assert.equal(done.attempts, 1);
  assert.deepEqual(
    done.steps?.map((s) => [s.kind, s.name, s.status]),
    [["llm", "builtin/echo", "ok"]],
  );
});

check("a memory is stored and found by search", async () => {
  const memory = expectData(
    await hub.POST("/api/v1/memories", {
      body: {
        key: "ts-lighthouse",
        content: "The lighthouse keeper feeds seventeen cats every morning.",
        scope: "global",
        tags: ["smoke"],
      },
    }),
    201,
    "create_memory",
  );
  assert.equal(memory.key, "ts-lighthouse");
  assert.equal(memory.scope, "global");
  const found = expectData(
    await hub.POST("/api/v1/memories/search", { body: { query: "lighthouse cats" } }),
    200,
    "search_memories",
  );
  assert.equal(found.mode, "keyword");
  const [best] = found.items;
  assert.ok(best, "the search found nothing");
  assert.equal(best.key, "ts-lighthouse");
  assert.deepEqual(best.tags, ["smoke"]);
  assert.match(best.snippet, /<mark>lighthouse<\/mark>/);
});

check("a tool call waits for approval, is approved, and the task completes", async () => {
  await createAgent({
    id: "ts-asker",
    name: "Asker",
    model: "builtin/scripted",
    tools: ["http_request"],
  });
  const url = "http://127.0.0.1:9/nothing";
  const script = `/tool http_request ${JSON.stringify({ url })}\n/reply finished`;
  const queued = expectData(
    await hub.POST("/api/v1/tasks", { body: { agent_id: "ts-asker", description: script } }),
    201,
    "create_task",
  );
  const waiting = await pollTask(queued.id, ["pending", "running"]);
  assert.equal(waiting.status, "waiting_approval");
  assert.ok(waiting.approval_id, "a waiting task without an approval");
  const path = { approval_id: waiting.approval_id };
  const asked = expectData(
    await hub.GET("/api/v1/approvals/{approval_id}", { params: { path } }),
    200,
    "get_approval",
  );
  assert.equal(asked.status, "pending");
  assert.equal(asked.tool, "http_request");
  assert.deepEqual(asked.arguments, { url });
  assert.equal(asked.task_id, queued.id);
  assert.equal(asked.agent_id, "ts-asker");
  const decided = expectData(
    await hub.POST("/api/v1/approvals/{approval_id}/approve", {
      params: { path },
      body: { comment: "go ahead" },
    }),
    200,
    "approve",
  );
  assert.equal(decided.id, asked.id);
  assert.equal(decided.status, "approved");
  assert.equal(decided.comment, "go ahead");
  assert.equal(decided.decided_by, "admin-token");
  const done = await pollTask(queued.id, ["pending", "running", "waiting_approval"]);
  assert.equal(done.status, "completed", JSON.stringify(done.error));
  assert.equal(done.result, "finished");
  const tool = done.steps?.find((s) => s.kind === "tool");
  assert.ok(tool, "no tool step");
  assert.equal(tool.approval_id, asked.id);
  // It ran, and the outbound policy refused the loopback address: an error result.
  assert.equal(tool.status, "error");
  const again = await hub.POST("/api/v1/approvals/{approval_id}/deny", { params: { path } });
  expectProblem(again, 409, "approval_decided", "Conflict");
});

check("an event is pushed and read back", async () => {
  const pushed = expectData(
    await hub.POST("/api/v1/events", {
      body: { type: "smoke.pinged", source: "ts-smoke", subject: "run-1", payload: { n: 1 } },
    }),
    201,
    "push_event",
  );
  assert.equal(pushed.type, "smoke.pinged");
  assert.equal(pushed.actor, "admin-token");
  const read = expectData(
    await hub.GET("/api/v1/events/{event_id}", { params: { path: { event_id: pushed.id } } }),
    200,
    "get_event",
  );
  assert.deepEqual(read, pushed);
  const listed = expectData(
    await hub.GET("/api/v1/events", { params: { query: { type: "smoke.*", source: "ts-smoke" } } }),
    200,
    "list_events",
  );
  assert.deepEqual(
    listed.items.map((e) => [e.id, e.subject, e.payload]),
    [[pushed.id, "run-1", { n: 1 }]],
  );
});

check("a 404, a 409 and a 422 are problem details", async () => {
  expectProblem(
    await hub.GET("/api/v1/agents/{agent_id}", { params: { path: { agent_id: "no-such-agent" } } }),
    404,
    "agent_not_found",
    "Not Found",
  );
  expectProblem(
    await hub.POST("/api/v1/agents", {
      body: { id: "ts-a1", name: "Twice", model: "builtin/echo" },
    }),
    409,
    "agent_exists",
    "Conflict",
  );
  const unknown = await hub.POST("/api/v1/sessions", { body: { agent_id: "no-such-agent" } });
  const problem = expectProblem(unknown, 422, "agent_not_found", "Unprocessable Entity");
  assert.match(problem.detail, /no-such-agent/);
});

for (const [name, run] of checks) {
  try {
    await run();
  } catch (failure) {
    console.log(`not ok - ${name}`);
    console.log(failure instanceof Error ? (failure.stack ?? failure.message) : String(failure));
    process.exit(1);
  }
  console.log(`ok - ${name}`);
}
console.log(`${checks.length} checks passed`);
