// What the browser tests share: launching Debian's Chromium headless, and waiting for a
// condition on a page.

import { chromium } from "playwright-core";

export const TIMEOUT = 20000;

/** Headless Chromium (CHROMIUM, default /usr/bin/chromium), quiet and without a sandbox. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Polls `check` (returning truthy when done) until it passes or `what` times out. */
export async function until(what, check, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
