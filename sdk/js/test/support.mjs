// What the SDK's tests share: the server under test (COURIER_URL, set by tests/it/web.rs), the
// test password, and waiting for a condition.

export const url = process.env.COURIER_URL;
if (!url) {
  console.error("COURIER_URL must be set (tests/it/web.rs does)");
  process.exit(2);
}
export const password = "correct horse battery";
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it is truthy; throws naming `what` after `timeout` ms. */
export async function until(what, check, timeout = 15000) {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
