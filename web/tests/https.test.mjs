// The web chat over HTTPS and wss://, in headless Chromium that trusts a test CA (added to the
// NSS database under HOME, as a user would add their company's CA): two people sign up, alice
// starts a chat with bob and sends; bob reads it, and the page's MQTT runs over wss://.
//
// Run by `cargo test` (tests/it/web.rs), which starts the server with TLS on and sets:
//   COURIER_URL  the server's https:// address
//   CHROMIUM     the browser (default /usr/bin/chromium)
//   HOME         a home whose .pki/nssdb trusts the test CA

import { launch, TIMEOUT, until } from "./support.mjs";

const url = process.env.COURIER_URL;
if (!url || !url.startsWith("https://")) {
  console.error("COURIER_URL must be the server's https:// address (tests/it/web.rs sets it)");
  process.exit(2);
}
const password = "correct horse battery";

const browser = await launch();


const sockets = [];
async function person(name) {
  // No ignoreHTTPSErrors: the certificate must chain to the trusted test CA.
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on("websocket", (ws) => sockets.push(ws.url()));
  const answer = await page.goto(url);
  if (!answer.ok()) throw new Error(`${url} answered ${answer.status()}`);
  await page.getByTestId("username").fill(name);
  await page.getByTestId("password").fill(password);
  await page.getByTestId("sign-up").click();
  await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor({ timeout: TIMEOUT });
  return page;
}

const texts = (page) => page.getByTestId("message").locator('[data-testid="text"]').allTextContents();

try {
  const a = await person("alice");
  const b = await person("bob");
  await a.getByTestId("new-chat").click();
  await a.getByTestId("people").fill("bob");
  await a.getByTestId("dialog-ok").click();
  await until("the chat title", async () => (await a.getByTestId("chat-title").textContent()) === "bob");
  await a.getByTestId("composer").fill("hello over TLS");
  await a.getByTestId("composer").press("Enter");
  await b.getByTestId("conv").filter({ has: b.getByTestId("conv-name").getByText("alice", { exact: true }) }).click();
  await until("bob reads it", async () => (await texts(b)).includes("hello over TLS"));
  if (!sockets.length || !sockets.every((u) => u.startsWith("wss://"))) {
    throw new Error(`the page's MQTT must run over wss://, saw ${JSON.stringify(sockets)}`);
  }
  console.log(`https: all steps passed (${sockets.length} wss:// connections)`);
} finally {
  await browser.close();
}
