// The web chat in headless Chromium, as two people use it: two browser contexts sign up, talk,
// watch ticks go ✓ → ✓✓ → blue, see typing and presence, make a group (a stranger must consent
// first), send a photo and see its thumbnail, scroll back through history, and lose the
// network and come back without losing or duplicating a message; then set a name and a
// picture the others see, report and block someone (whose sends are refused with a reason),
// and delete an account.
//
// Run by `cargo test` (tests/it/web.rs), which starts the server and sets:
//   COURIER_URL        the server's HTTP address
//   COURIER_IMAGE      a JPEG to upload
//   COURIER_VIDEO      an MP4 to upload
//   COURIER_ARTIFACTS  where screenshots go when a step fails
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   COURIER_PUSH_LOG   GET: the push notices the server's webhook received, as a JSON array

import { launch, TIMEOUT, until } from "./support.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = process.env.COURIER_URL;
const image = process.env.COURIER_IMAGE;
const video = process.env.COURIER_VIDEO;
const artifacts = process.env.COURIER_ARTIFACTS || "test-results";
const pushLog = process.env.COURIER_PUSH_LOG;
const password = "correct horse battery";

if (!url || !image || !video || !pushLog) {
  console.error("COURIER_URL, COURIER_IMAGE, COURIER_VIDEO and COURIER_PUSH_LOG must be set (tests/it/web.rs does)");
  process.exit(2);
}

const browser = await launch();

const pages = {};
let step = "start";


async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.error(`[${name}] console: ${m.text()}`));
  await page.goto(url);
  await page.getByTestId("username").fill(name);
  await page.getByTestId("password").fill(password);
  await page.getByTestId("sign-up").click();
  await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  pages[name] = page;
  return { context, page };
}

/** The texts of the messages shown in the open conversation. */
const texts = (page) => page.getByTestId("message").locator('[data-testid="text"]').allTextContents();

/** Picks `name` from the @ autocomplete after typing `typed`, then sends `rest` after it. */
async function mention(page, typed, name, rest) {
  await page.getByTestId("composer").fill(typed);
  await page.getByTestId("mention-option").filter({ hasText: name }).first().click();
  const value = await page.getByTestId("composer").inputValue();
  if (value !== `@${name} `) throw new Error(`the autocomplete typed ${JSON.stringify(value)}`);
  await page.getByTestId("composer").fill(value + rest);
  await page.getByTestId("composer").press("Enter");
}

/** The list entry of the conversation called `name`. */
const entry = (page, name) => page.getByTestId("conv").filter({ has: page.getByTestId("conv-name").getByText(name, { exact: true }) });

/** The tick state of the (last) own message whose text is `text`. */
async function ticks(page, text) {
  const msg = page.getByTestId("message").filter({ has: page.getByTestId("text").getByText(text, { exact: true }) }).last();
  return msg.getByTestId("ticks").getAttribute("data-state", { timeout: 1000 });
}

async function typeAndSend(page, text) {
  await page.getByTestId("composer").fill(text);
  await page.getByTestId("composer").press("Enter");
}

async function openConv(page, name) {
  await page.getByTestId("conv").filter({ has: page.getByTestId("conv-name").getByText(name, { exact: true }) }).click();
  await until(`${name} open`, async () => (await page.getByTestId("chat-title").textContent()) === name);
}

const once = (list, text) => list.filter((t) => t === text).length === 1;

const started = Date.now();
const log = (what) => console.log(`${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  ${what}`);

try {
  step = "sign up";
  log(step);
  const alice = await person("alice");
  const bob = await person("bob");
  const a = alice.page;
  const b = bob.page;

  step = "a wrong password is refused with a message";
  log(step);
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(url);
    await p.getByTestId("username").fill("alice");
    await p.getByTestId("password").fill("not her password");
    await p.getByTestId("log-in").click();
    await until("the error", async () => (await p.getByTestId("login-error").textContent()).includes("Wrong"));
    await ctx.close();
  }

  step = "alice starts a chat with bob";
  log(step);
  await a.getByTestId("new-chat").click();
  await a.getByTestId("people").fill("bob");
  await a.getByTestId("dialog-ok").click();
  await until("the chat title", async () => (await a.getByTestId("chat-title").textContent()) === "bob");
  await until("bob shown online", async () => (await a.getByTestId("chat-sub").textContent()) === "online");

  step = "alice sends; ✓ then ✓✓ once bob's browser has it";
  log(step);
  await typeAndSend(a, "hello bob");
  await until("✓ or ✓✓", async () => ["sent", "delivered"].includes(await ticks(a, "hello bob")));
  await until("✓✓ (delivered)", async () => (await ticks(a, "hello bob")) === "delivered");

  step = "bob's list shows the chat, its last message and 1 unread";
  log(step);
  const bobsChat = b.getByTestId("conv").filter({ has: b.getByTestId("conv-name").getByText("alice", { exact: true }) });
  await until("unread 1", async () => (await bobsChat.getByTestId("unread").textContent({ timeout: 500 })) === "1");
  await until("the preview", async () => (await bobsChat.getByTestId("conv-last").textContent()) === "hello bob");
  await until("alice online in bob's list", async () => (await bobsChat.getByTestId("conv-seen").textContent()) === "online");

  step = "bob opens it: blue ticks for alice, no unread for bob";
  log(step);
  await openConv(b, "alice");
  await until("bob sees the message", async () => once(await texts(b), "hello bob"));
  await until("blue (read)", async () => (await ticks(a, "hello bob")) === "read");
  await until("bob's unread cleared", async () => (await bobsChat.getByTestId("unread").count()) === 0);

  step = "bob types: alice sees typing…";
  log(step);
  await b.getByTestId("composer").fill("hi al");
  await until("typing…", async () => (await a.getByTestId("chat-sub").textContent()) === "typing…");
  await b.getByTestId("composer").fill("");
  await typeAndSend(b, "hi alice");
  await until("alice gets the reply", async () => once(await texts(a), "hi alice"));
  await until("typing cleared", async () => (await a.getByTestId("chat-sub").textContent()) === "online");
  await until("bob's reply read by alice", async () => (await ticks(b, "hi alice")) === "read");

  step = "alice sends a photo: progress, then its thumbnail on both sides";
  log(step);
  // Watch for the progress bar: a local upload is over in a moment.
  await a.evaluate(() => {
    window.sawProgress = false;
    new MutationObserver(() => {
      if (document.querySelector('[data-testid="upload-progress"]')) window.sawProgress = true;
    }).observe(document.body, { childList: true, subtree: true });
  });
  await a.getByTestId("file-input").setInputFiles(image);
  const thumbOk = async (page) => {
    const img = page.getByTestId("thumb").last();
    return (await img.count()) > 0 && (await img.evaluate((i) => i.complete && i.naturalWidth > 0 && !i.hidden));
  };
  await until("alice's thumbnail", () => thumbOk(a), 60000);
  if (!(await a.evaluate(() => window.sawProgress))) throw new Error("no progress bar was shown");
  await until("bob's thumbnail", () => thumbOk(b), 60000);
  const size = await b.getByTestId("thumb").last().evaluate((i) => [i.naturalWidth, i.naturalHeight]);
  if (Math.max(...size) !== 320) throw new Error(`thumbnail is ${size}, want 320 px on its longest side`);
  await until("the photo's ticks", async () => {
    const t = await a.getByTestId("message").last().getByTestId("ticks").getAttribute("data-state");
    return t === "read";
  });

  step = "alice sends a clip: bob sees its poster and plays its preview";
  log(step);
  await a.getByTestId("file-input").setInputFiles(video);
  const poster = b.getByTestId("poster").last();
  await until("bob's poster", async () => (await poster.count()) > 0 && (await poster.evaluate((i) => i.complete && i.naturalWidth > 0 && !i.hidden)), 60000);
  await b.getByTestId("play").last().click();
  const player = b.getByTestId("viewer").locator("video");
  await until("the preview plays", async () => (await player.count()) > 0 && (await player.evaluate((v) => v.readyState >= 1 && v.duration > 1.5)));
  await b.getByTestId("viewer").click({ position: { x: 5, y: 5 } });

  step = "alice sends a document: bob gets it as a file to download";
  log(step);
  await a.getByTestId("file-input").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("shopping: milk, eggs\n") });
  await until("bob's file", async () => (await b.getByTestId("file").allTextContents()).some((t) => t.includes("notes.txt")));
  const [download] = await Promise.all([b.waitForEvent("download"), b.getByTestId("file").last().click()]);
  if (download.suggestedFilename() !== "notes.txt") throw new Error(`download named ${download.suggestedFilename()}`);

  step = "an unsupported file is refused with a message, and nothing is sent";
  log(step);
  await a.getByTestId("file-input").setInputFiles({ name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from([0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0, 0]) });
  await until("the refusal", async () => (await a.getByTestId("upload").allTextContents()).some((t) => t.includes("cannot be sent")));
  await new Promise((r) => setTimeout(r, 500));
  if ((await b.getByTestId("message").count()) !== (await a.getByTestId("message").count())) throw new Error("the refused file changed the conversation");

  step = "history scrolls back";
  log(step);
  for (let i = 1; i <= 45; i++) await typeAndSend(a, `count ${i}`);
  await until("all 45 sent", async () => {
    const states = await a.getByTestId("ticks").evaluateAll((els) => els.map((e) => e.dataset.state));
    return !states.includes("sending") && (await texts(a)).includes("count 45");
  });
  await b.reload();
  await b.getByTestId("status").and(b.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  await openConv(b, "alice");
  await until("the newest page", async () => (await texts(b)).includes("count 45"));
  if ((await texts(b)).includes("hello bob")) throw new Error("the first page should not reach back to the first message");
  await until("older pages load on scroll", async () => {
    await b.getByTestId("messages").evaluate((m) => (m.scrollTop = 0));
    await b.getByTestId("messages").dispatchEvent("scroll");
    return (await texts(b)).includes("hello bob");
  });
  const all = await texts(b);
  for (let i = 1; i <= 45; i++) if (!once(all, `count ${i}`)) throw new Error(`count ${i} is not shown exactly once: ${all}`);

  step = "alice loses the network: her messages wait as sending, then go out once";
  log(step);
  await alice.context.setOffline(true);
  await until("offline banner", () => a.getByTestId("offline-banner").isVisible());
  await typeAndSend(a, "sent while offline 1");
  await typeAndSend(a, "sent while offline 2");
  await until("shown as sending", async () => (await ticks(a, "sent while offline 2")) === "sending");
  await typeAndSend(b, "while you were away");
  await new Promise((r) => setTimeout(r, 1500));
  if ((await ticks(a, "sent while offline 1")) !== "sending") throw new Error("a message went out while offline");
  await alice.context.setOffline(false);
  await until("back online", async () => !(await a.getByTestId("offline-banner").isVisible()));
  await until("alice gets what bob sent meanwhile", async () => once(await texts(a), "while you were away"));
  await until("bob gets both, once each", async () => {
    const t = await texts(b);
    return once(t, "sent while offline 1") && once(t, "sent while offline 2");
  });
  await until("they are read", async () => (await ticks(a, "sent while offline 2")) === "read");
  await until("bob's message read by alice", async () => (await ticks(b, "while you were away")) === "read");
  const order = (await texts(b)).filter((t) => t.startsWith("sent while offline"));
  if (order.join("|") !== "sent while offline 1|sent while offline 2") throw new Error(`order: ${order}`);
  // Nothing twice, anywhere: on reload each message is in history once.
  await a.reload();
  await a.getByTestId("status").and(a.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  await openConv(a, "bob");
  for (const t of ["sent while offline 1", "sent while offline 2", "while you were away"]) {
    await until(`${t} once after reload`, async () => once(await texts(a), t));
  }

  step = "bob goes away: alice sees last seen";
  log(step);
  if (process.env.COURIER_SHOTS) {
    mkdirSync(process.env.COURIER_SHOTS, { recursive: true });
    await b.screenshot({ path: join(process.env.COURIER_SHOTS, "bob.png") });
  }
  await bob.context.close();
  await until("last seen", async () => (await a.getByTestId("chat-sub").textContent()).startsWith("last seen"), 60000);

  step = "alice makes a group";
  log(step);
  await person("carol");
  const c = pages.carol;
  await a.getByTestId("new-group").click();
  await a.getByTestId("group-title").fill("Weekend");
  await a.getByTestId("people").fill("bob, carol");
  await a.getByTestId("dialog-ok").click();
  // bob wrote to alice, so she is his contact; carol never met her and must agree first.
  await until("carol must consent", async () => (await a.getByTestId("dialog-error").textContent()).includes("carol can't be added"));
  if ((await a.getByTestId("dialog-error").textContent()).includes("bob")) throw new Error("bob was refused too");
  await until("carol's default", async () => (await c.getByTestId("group-adds").inputValue()) === "contacts");
  const saved = c.waitForResponse((r) => r.url().endsWith("/v1/me/settings") && r.request().method() === "PATCH");
  await c.getByTestId("group-adds").selectOption("everyone");
  if (!(await saved).ok()) throw new Error("carol's setting was not saved");
  await c.reload();
  await until("carol's choice is kept", async () => (await c.getByTestId("group-adds").inputValue()) === "everyone");
  await a.getByTestId("dialog-ok").click();
  await until("the group open", async () => (await a.getByTestId("chat-title").textContent()) === "Weekend");
  await typeAndSend(a, "who is in?");
  await until("carol has the group", async () => (await c.getByTestId("conv-name").allTextContents()).includes("Weekend"));
  await openConv(c, "Weekend");
  await until("carol sees the message", async () => once(await texts(c), "who is in?"));
  // bob is away: delivered to carol only is still ✓, not ✓✓.
  if ((await ticks(a, "who is in?")) !== "sent") throw new Error("group ticks moved before every member had it");

  step = "a second tab of alice's waits, then takes the connection over";
  log(step);
  let a2 = await alice.context.newPage();
  pages.alice2 = a2;
  await a2.goto(url);
  await until("the second tab offers 'Use here'", () => a2.getByTestId("elsewhere").isVisible());
  await a2.getByTestId("use-here").click();
  await a2.getByTestId("status").and(a2.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  await until("the first tab stands down", () => a.getByTestId("elsewhere").isVisible());
  await openConv(a2, "Weekend");
  await typeAndSend(a2, "from the other tab");
  await until("carol gets it", async () => once(await texts(c), "from the other tab"));
  await new Promise((r) => setTimeout(r, 1500));
  if ((await a.getByTestId("status").getAttribute("data-state")) !== "offline") throw new Error("the first tab reconnected");

  step = "alice names herself and sets a picture: carol sees the name";
  log(step);
  await a2.getByTestId("profile").click();
  await a2.getByTestId("display-name").fill("  Alice Liddell ");
  await a2.getByTestId("profile-save").click();
  await until("alice's own name", async () => (await a2.getByTestId("me-name").textContent()) === "Alice Liddell");
  await until("carol sees it in the group", async () => (await c.getByTestId("chat-sub").textContent()).includes("Alice Liddell"));
  await until("on alice's messages too", async () => (await c.locator(".msg .who").allTextContents()).includes("Alice Liddell"));
  await a2.getByTestId("profile").click();
  await a2.getByTestId("avatar-input").setInputFiles(image);
  await until("the picture saved", async () => (await a2.getByTestId("profile-status").textContent()) === "picture saved", 60000);
  await until("alice's picture, 256 px square", async () => {
    const size = await a2.getByTestId("me-avatar").evaluate((i) => (i.complete && !i.hidden ? [i.naturalWidth, i.naturalHeight] : null));
    return size && size[0] === 256 && size[1] === 256;
  });
  await a2.locator('#profile-form button[value="cancel"]').click();

  step = "alice renames the group: carol reads a system line and sees the new name; she cannot rename it";
  log(step);
  await openConv(a2, "Weekend");
  await a2.getByTestId("group-settings").click();
  await a2.getByTestId("group-name").fill("Weekend trip");
  await a2.getByTestId("group-save").click();
  await until("alice's list has the new name", async () => (await a2.getByTestId("conv-name").allTextContents()).includes("Weekend trip"));
  await until("carol reads the line", async () => (await c.getByTestId("system-line").allTextContents()).includes('Alice Liddell named the group "Weekend trip"'));
  await until("carol sees the new name", async () => (await c.getByTestId("chat-title").textContent()) === "Weekend trip");
  await c.getByTestId("group-settings").click();
  await until("carol's dialog lists the roles", async () => (await c.getByTestId("role").allTextContents()).join(",") !== "");
  if (await c.getByTestId("group-save").isVisible()) throw new Error("a member is offered to save group changes");
  await c.locator('#group-form button[value="cancel"]').click();

  step = "carol mentions alice with the autocomplete: alice's list marks it, the name is highlighted";
  log(step);
  await openConv(a2, "bob");
  await mention(c, "@Ali", "Alice Liddell", "are you in?");
  await until("alice's list marks the mention", () => entry(a2, "Weekend trip").getByTestId("mentioned").isVisible());
  await openConv(a2, "Weekend trip");
  await until("the mention is highlighted", async () => (await a2.getByTestId("mention").allTextContents()).includes("@Alice Liddell"));
  await until("the mark goes once read", async () => (await entry(a2, "Weekend trip").getByTestId("mentioned").count()) === 0);

  step = "alice pins her chat with bob: it goes to the top, and stays there after a reload";
  log(step);
  await openConv(a2, "bob");
  await a2.getByTestId("pin").click();
  const firstIsBob = async () =>
    (await a2.getByTestId("conv-name").first().textContent()) === "bob" && (await a2.getByTestId("conv").first().getByTestId("pinned").isVisible());
  await until("bob's chat first, pinned", firstIsBob);
  await a2.reload();
  await a2.getByTestId("status").and(a2.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  await until("still first", firstIsBob);

  step = "alice mutes the group and goes away: carol's chatter pushes nothing, a mention does";
  log(step);
  const session = await a2.evaluate(() => JSON.parse(localStorage.getItem("courier:session")));
  await a2.evaluate(async ({ device, token }) => {
    const r = await fetch(`/v1/devices/${device}/push`, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ provider: "webpush", token: "alice-browser" }),
    });
    if (!r.ok) throw new Error(`push token: ${r.status}`);
  }, session);
  await openConv(a2, "Weekend trip");
  await a2.getByTestId("mute").click();
  await until("the muted mark", () => entry(a2, "Weekend trip").getByTestId("muted").isVisible());
  await a.close();
  await a2.close();
  const notices = async () => (await (await fetch(pushLog)).json()).filter((n) => n.user === session.user);
  await new Promise((r) => setTimeout(r, 1500));
  await typeAndSend(c, "muted chatter");
  await new Promise((r) => setTimeout(r, 2500));
  if ((await notices()).length) throw new Error(`a muted group pushed: ${JSON.stringify(await notices())}`);
  await mention(c, "@Ali", "Alice Liddell", "need you here");
  await until("the mention is pushed", async () => (await notices()).some((n) => n.mentioned));
  a2 = await alice.context.newPage();
  pages.alice2 = a2;
  await a2.goto(url);
  await a2.getByTestId("status").and(a2.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });

  step = "alice finds a message by searching without accents, and opens it";
  log(step);
  await typeAndSend(c, "Hẹn gặp ở Đà Lạt nhé");
  await a2.getByTestId("search").fill("da lat");
  await until("one result", async () => (await a2.getByTestId("search-result").count()) === 1);
  await a2.getByTestId("search-result").first().click();
  await until("the found message is shown", async () => {
    const found = a2.locator('[data-testid="message"][data-found="true"]');
    return (await found.count()) === 1 && (await found.getByTestId("text").textContent()) === "Hẹn gặp ở Đà Lạt nhé";
  });
  if ((await a2.getByTestId("chat-title").textContent()) !== "Weekend trip") throw new Error("search opened the wrong chat");

  step = "carol writes to alice; alice reports and blocks her; carol's next message is refused, with a reason";
  log(step);
  await c.getByTestId("new-chat").click();
  await c.getByTestId("people").fill("alice");
  await c.getByTestId("dialog-ok").click();
  await until("carol's chat with alice, by her name", async () => (await c.getByTestId("chat-title").textContent()) === "Alice Liddell");
  await until("with her picture", async () => c.getByTestId("chat-avatar").evaluate((i) => i.complete && !i.hidden && i.naturalWidth === 256));
  await typeAndSend(c, "hi alice, it's carol");
  await until("alice has carol's chat", async () => (await a2.getByTestId("conv-name").allTextContents()).includes("carol"));
  await openConv(a2, "carol");
  await until("alice sees it", async () => once(await texts(a2), "hi alice, it's carol"));
  await a2.getByTestId("report").click();
  await a2.getByTestId("report-reason").selectOption("spam");
  await a2.getByTestId("report-send").click();
  await until("the report is taken", async () => (await a2.getByTestId("toast").textContent()).startsWith("Reported"));
  await a2.getByTestId("block").click();
  await until("blocked", async () => (await a2.getByTestId("block").textContent()) === "Unblock");
  await until("alice's banner", () => a2.getByTestId("blocked-banner").isVisible());
  await typeAndSend(c, "why no answer?");
  await until("carol is told why", async () => (await c.getByTestId("send-error").allTextContents()).some((t) => t.includes("can't message this person")));
  await new Promise((r) => setTimeout(r, 500));
  if ((await texts(a2)).includes("why no answer?")) throw new Error("a blocked user's message reached alice");

  step = "carol deletes her account: she is logged out, alice sees a deleted account";
  log(step);
  await c.getByTestId("profile").click();
  await c.locator("#profile-form details summary").click();
  await c.getByTestId("delete-password").fill("not my password");
  await c.getByTestId("delete-account").click();
  await until("a wrong password is refused", async () => (await c.getByTestId("profile-error").textContent()) === "Wrong password.");
  await c.getByTestId("delete-password").fill(password);
  await c.getByTestId("delete-account").click();
  await until("carol is logged out", async () => (await c.getByTestId("login-error").textContent()).includes("deleted"));
  await until("alice sees a deleted account", async () => (await a2.getByTestId("chat-title").textContent()) === "Deleted account");
  await until("and cannot write to it", () => a2.getByTestId("blocked-banner").isVisible());
  if (!(await a2.getByTestId("blocked-banner").textContent()).includes("deleted")) throw new Error("the banner does not say the account was deleted");
  if (!once(await texts(a2), "hi alice, it's carol")) throw new Error("carol's message is gone from alice's chat");

  if (process.env.COURIER_SHOTS) {
    mkdirSync(process.env.COURIER_SHOTS, { recursive: true });
    for (const [name, page] of Object.entries(pages)) {
      if (!page.isClosed()) await page.screenshot({ path: join(process.env.COURIER_SHOTS, `${name}.png`) });
    }
  }
  console.log("web chat: all steps passed");
  await browser.close();
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.stack || e}`);
  mkdirSync(artifacts, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    const file = join(artifacts, `${name}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
      console.error(`screenshot: ${file}`);
    } catch {
      // The page is gone (closed on purpose).
    }
  }
  await browser.close();
  process.exit(1);
}
