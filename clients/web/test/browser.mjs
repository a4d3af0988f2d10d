// The dashboard in headless Chromium against a real `claude-swarm serve --agent simulated`
// that this script starts (and restarts, on the same port and data directory). Run by
// tests/dashboard.rs, which passes:
//   SWARM_BIN          the server binary
//   SWARM_DATA         an empty data directory
//   SCREENSHOTS        where each view's screenshot goes (not committed)
//   DOCS_PNG           where the README's screenshot goes (optional)
//   CHROMIUM           the browser (default /usr/bin/chromium)
// Prints `ok - <step>` per step and `N passed, 0 failed` at the end; exits non-zero on the
// first failure. Every server it started is stopped on the way out, whatever happened.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.SWARM_BIN;
const data = process.env.SWARM_DATA;
const shots = process.env.SCREENSHOTS;
const docsPng = process.env.DOCS_PNG;
if (!bin || !data || !shots) throw new Error("SWARM_BIN, SWARM_DATA and SCREENSHOTS are required");
mkdirSync(shots, { recursive: true });

const READER = "reader-key-0123456789abcdef";
const ADMIN = "admin-key-0123456789abcdef";
const LIMIT = 30_000;
const servers = new Set();

/** Starts the server; resolves with its address once it logs it. */
function serve({ port = 0, dir = data, env = {} } = {}) {
  const child = spawn(
    bin,
    ["serve", "--agent", "simulated", "--instances", "2", "--listen", `127.0.0.1:${port}`, "--data-dir", dir],
    { env: { ...process.env, SWARM_LOG: "claude_swarm=info", ...env }, stdio: ["ignore", "ignore", "pipe"] },
  );
  servers.add(child);
  child.on("exit", () => servers.delete(child));
  return new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`no address logged in ${LIMIT} ms:\n${log}`)), LIMIT);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const found = /address=(\S+)/.exec(log);
      if (found) {
        clearTimeout(timer);
        resolve({ child, address: found[1] });
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code}):\n${log}`)));
  });
}

/** SIGTERM, and waits for the exit. */
function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on("exit", resolve);
    child.kill("SIGTERM");
  });
}

/** A page in a browser context of its own (its own session storage), and its errors. */
async function freshTab() {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.setDefaultTimeout(LIMIT);
  const errors = [];
  tab.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  tab.on("pageerror", (e) => errors.push(String(e)));
  return { context, tab, errors };
}

let passed = 0;
async function step(name, work) {
  await work();
  passed += 1;
  console.log(`ok - ${name}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  let { child: server, address } = await serve();
  const base = `http://${address}`;
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(LIMIT);
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const submit = async (prompt) => {
    await page.goto(`${base}/#/actions`);
    await page.fill("#submit-task textarea[name=prompt]", prompt);
    await page.click("#submit-task button[type=submit]");
    return page.getAttribute("#submitted a[data-task-id]", "data-task-id");
  };

  await step("the page loads, goes live and logs no console error", async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector("body[data-stream=live]");
    await page.waitForSelector(".overview .cards");
    await page.waitForSelector("tr[data-instance-id]");
    if (errors.length) throw new Error(`console errors: ${errors.join("\n")}`);
  });

  await step("a workflow's document is checked before it runs (line and column)", async () => {
    await page.goto(`${base}/#/actions`);
    await page.fill("#workflow-yaml", "name: broken\ntasks:\n  - id: a\n    prompt: x\n    priority: urgent\n");
    await page.waitForSelector("#workflow-verdict .error[data-line='5']");
    if (!(await page.isDisabled("#run-workflow"))) throw new Error("an invalid document can be run");
  });

  await step("a running workflow's nodes change state live", async () => {
    const yaml = [
      "name: live-dag",
      "tasks:",
      "  - id: plan",
      "    prompt: plan it sim:delay=1500",
      "  - id: build",
      "    prompt: build it sim:delay=300",
      "    depends_on: [plan]",
      "  - id: test",
      "    prompt: test it sim:delay=300",
      "    depends_on: [plan]",
      "  - id: ship",
      "    prompt: ship it",
      "    depends_on: [build, test]",
      "",
    ].join("\n");
    await page.fill("#workflow-yaml", yaml);
    await page.waitForSelector("#workflow-verdict .ok");
    await page.click("#run-workflow");
    await page.waitForURL(/#\/workflow\//);
    const node = (name, state) => page.waitForSelector(`#dag a.node[data-status=${state}]:has(text:text-is("${name}"))`);
    // The same nodes, seen in one state and then in the next, without a reload.
    await node("plan", "running");
    await node("ship", "pending");
    await node("plan", "completed");
    await node("ship", "completed");
    await page.waitForSelector("#workflow-status:text('completed')");
    await shot("workflow");
  });

  await step("a workflow is cancelled from its page, its nodes with it", async () => {
    await page.goto(`${base}/#/actions`);
    await page.fill("#workflow-yaml", "name: held\ntasks:\n  - id: wait\n    prompt: hold sim:hang\n  - id: after\n    prompt: then\n    depends_on: [wait]\n");
    await page.waitForSelector("#workflow-verdict .ok");
    await page.click("#run-workflow");
    await page.waitForSelector('#dag a.node[data-status=running]:has(text:text-is("wait"))');
    await page.click("#cancel-workflow");
    await page.waitForSelector("#workflow-status:text('cancelled')");
    await page.waitForSelector('#dag a.node[data-status=cancelled]:has(text:text-is("wait"))');
    await page.waitForSelector('#dag a.node:not([data-status=pending]):has(text:text-is("after"))');
    await page.waitForSelector("#cancel-workflow", { state: "detached" });
  });

  await step("a task submitted from the form appears and completes", async () => {
    const id = await submit("say hello sim:delay=200");
    await page.goto(`${base}/#/tasks`);
    await page.waitForSelector(`#task-rows a.row[data-task-id="${id}"][data-status=completed]`);
    await shot("tasks");
    await page.goto(`${base}/#/task/${id}`);
    await page.waitForSelector("#task-status:text('completed')");
    await page.waitForSelector("#transcript .entry.final");
    await shot("task");
  });

  await step("a pending approval is allowed from the inbox and its task goes on", async () => {
    const marker = join(data, "approved.txt");
    const id = await submit(`write it sim:ask=${marker}`);
    await page.goto(`${base}/#/approvals`);
    const card = `section.approval[data-task-id="${id}"]`;
    await page.waitForSelector(card);
    await page.waitForFunction(() => document.title.startsWith("(1)"));
    await shot("approvals");
    await page.click(`${card} button.allow`);
    await page.waitForSelector(card, { state: "detached" });
    await page.goto(`${base}/#/task/${id}`);
    await page.waitForSelector("#task-status:text('completed')");
    if (!existsSync(marker)) throw new Error("the allowed tool call did not run");
    await page.waitForFunction(() => document.title === "claude-swarm");
  });

  await step("a task is cancelled from its page", async () => {
    const id = await submit("hold on sim:hang");
    await page.goto(`${base}/#/task/${id}`);
    await page.waitForSelector("#task-status:text('running')");
    await page.click("#cancel");
    await page.waitForSelector("#task-status:text('cancelled')");
    await page.waitForSelector("#cancel", { state: "detached" });
  });

  await step("10,000 tasks: the table draws only the rows in sight, filters and follows them", async () => {
    const post = (path, body, method = "POST") =>
      fetch(`${base}${path}`, { method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body) });
    const held = (await (await post("/tasks", { prompt: "hold the rest sim:hang" })).json()).task_id;
    const tasks = Array.from({ length: 10_000 }, (_, i) => ({ prompt: `waiting ${i}`, name: `waiting ${i}`, depends_on: [held] }));
    const started = Date.now();
    const batch = await post("/tasks/batch", { tasks });
    if (!batch.ok) throw new Error(`batch: ${batch.status} ${await batch.text()}`);
    await page.goto(`${base}/#/tasks`);
    await page.waitForFunction(() => Number(document.querySelector("#task-count")?.dataset.total) >= 10_000);
    console.log(`# 10,000 tasks submitted and shown in ${Date.now() - started} ms`);
    await shot("tasks-10000");
    const drawn = () => page.locator("#task-rows a.row").count();
    if ((await drawn()) > 100) throw new Error(`${await drawn()} rows drawn for 10,000 tasks`);
    await page.fill(".filters input[name=q]", "waiting 4242");
    await page.waitForSelector("#task-count[data-shown='1']");
    await page.fill(".filters input[name=q]", "");
    // Scrolled to the end: the last rows are drawn, and still only those in sight.
    await page.locator("#task-rows").evaluate((el) => (el.scrollTop = el.scrollHeight));
    await page.waitForFunction(() => {
      const el = document.querySelector("#task-rows");
      const rows = [...el.querySelectorAll("a.row")];
      return rows.length > 0 && rows.length < 100 && Math.max(...rows.map((r) => parseFloat(r.style.top))) > el.scrollHeight - 2 * el.clientHeight;
    });
    // Cancelling the one they wait on skips all 10,000, live.
    const skipped = Date.now();
    await post(`/tasks/${held}`, undefined, "DELETE");
    await page.selectOption(".filters select[name=state]", { label: "skipped" });
    await page.waitForSelector("#task-count[data-shown='10000']");
    console.log(`# 10,000 tasks skipped and shown in ${Date.now() - skipped} ms`);
    await page.selectOption(".filters select[name=state]", { label: "any state" });
  });

  await step("the overview shows the swarm", async () => {
    await page.goto(`${base}/#/`);
    await page.waitForSelector(".counts tr.completed td:text-matches('[1-9]')");
    await shot("overview");
    if (docsPng) await page.screenshot({ path: docsPng });
    if (errors.length) throw new Error(`console errors: ${errors.join("\n")}`);
  });

  await step("the event stream resumes after the server restarts", async () => {
    await page.goto(`${base}/#/tasks`);
    await page.waitForSelector("body[data-stream=live]");
    const before = BigInt(await page.getAttribute("body", "data-last-sequence"));
    // The page is kept from reconnecting until the restarted server has run a task, so it
    // can only learn of that task by resuming after its last sequence (not by re-listing).
    const events = "**/claude_swarm.v1.EventService/**";
    await page.route(events, (route) => route.abort());
    await stop(server);
    await page.waitForSelector("body[data-stream=reconnecting]");
    ({ child: server } = await serve({ port: Number(address.split(":").pop()) }));
    const response = await fetch(`${base}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "after the restart" }),
    });
    const { task_id: id } = await response.json();
    const deadline = Date.now() + LIMIT;
    for (;;) {
      const task = await (await fetch(`${base}/tasks/${id}`)).json();
      if (task.status === "completed") break;
      if (Date.now() > deadline) throw new Error(`task ${id} did not complete: ${JSON.stringify(task)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const row = `#task-rows a.row[data-task-id="${id}"]`;
    if (await page.$(row)) throw new Error("the page saw the task before it reconnected");
    let listed = 0;
    page.on("request", (r) => r.url().endsWith(".TaskService/ListTasks") && (listed += 1));
    await page.unroute(events);
    await page.waitForSelector("body[data-stream=live]");
    await page.waitForSelector(`${row}[data-status=completed]`);
    if (listed) throw new Error(`the page listed the tasks again (${listed} times) instead of resuming`);
    const after = BigInt(await page.getAttribute("body", "data-last-sequence"));
    if (after <= before) throw new Error(`sequence ${after} after ${before}`);
    const away = ["net::ERR_CONNECTION_REFUSED", "net::ERR_FAILED", "Failed to fetch"];
    const unexpected = errors.filter((e) => !away.some((a) => e.includes(a)));
    if (unexpected.length) throw new Error(`console errors: ${unexpected.join("\n")}`);
  });
  await stop(server);

  await step("with keys, the page asks for one; a read-only key shows no buttons; a pause shows, and an admin lifts it", async () => {
    const dir = join(data, "keys");
    mkdirSync(dir, { recursive: true });
    const keyed = await serve({ dir, env: { SWARM_API_KEYS: `reader:read:${READER},boss:admin:${ADMIN}` } });
    const url = `http://${keyed.address}`;
    const { context, tab, errors: tabErrors } = await freshTab();
    await tab.goto(`${url}/`);
    await tab.waitForSelector("#key-form");
    await tab.screenshot({ path: join(shots, "key.png") });
    await tab.fill("#key-form input[name=key]", READER);
    await tab.click("#key-form button");
    await tab.waitForSelector("body[data-stream=live][data-role=read]");
    if (await tab.isVisible("#nav-actions")) throw new Error("a read-only key is offered Actions");
    const held = await fetch(`${url}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ prompt: "hold on sim:hang" }),
    });
    const { task_id: id } = await held.json();
    await tab.goto(`${url}/#/task/${id}`);
    await tab.waitForSelector("#task-status");
    if (await tab.$("#cancel")) throw new Error("a read-only key is offered Cancel");
    // The key is kept for the tab's session: a reload does not ask again.
    await tab.reload();
    await tab.waitForSelector("body[data-stream=live][data-role=read]");
    // A rate limit pauses the only account: the overview says so, and until when.
    const limited = await fetch(`${url}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ prompt: "limited sim:rate_limit=120" }),
    });
    const { task_id: limitedId } = await limited.json();
    await tab.goto(`${url}/#/`);
    await tab.waitForSelector("#banner:not([hidden]):text('Dispatching is paused')");
    await tab.waitForSelector("#banner:text('until')");
    await tab.waitForSelector("tr[data-account=default] .badge.paused");
    await tab.screenshot({ path: join(shots, "paused.png") });
    if (await tab.$("tr[data-account=default] button.resume")) throw new Error("a read-only key is offered Resume");
    if (tabErrors.length) throw new Error(`console errors: ${tabErrors.join("\n")}`);
    await context.close();

    // An admin lifts the pause from the overview: the banner goes, and the refused task
    // resumes its session and completes two minutes before the reset it was given.
    const { context: adminContext, tab: admin, errors: adminErrors } = await freshTab();
    await admin.goto(`${url}/`);
    await admin.fill("#key-form input[name=key]", ADMIN);
    await admin.click("#key-form button");
    await admin.waitForSelector("body[data-stream=live][data-role=admin]");
    await admin.click("tr[data-account=default] button.resume");
    await admin.waitForSelector("#account-notice:text('default: resumed')");
    await admin.waitForSelector("tr[data-account=default] .badge.active");
    await admin.waitForSelector("#banner[hidden]", { state: "attached" });
    await admin.goto(`${url}/#/task/${limitedId}`);
    await admin.waitForSelector("#task-status:text('completed')");
    if (adminErrors.length) throw new Error(`console errors: ${adminErrors.join("\n")}`);
    await adminContext.close();
    await stop(keyed.child);
  });

  console.log(`${passed} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - ${error?.stack ?? error}`);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser.close();
  await Promise.all([...servers].map(stop));
}
