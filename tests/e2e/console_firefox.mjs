// The console's smoke test in Firefox (issue 22), run by tests/e2e/test_console.py: Debian's
// firefox-esr driven over WebDriver BiDi by puppeteer-core from the npm registry (installed
// by scripts/bootstrap into .cache/puppeteer; no geckodriver, which neither registry has).
// Signs in with the key, waits for the Overview with its chain and lane, live from the event
// stream (fetch + ReadableStream in Firefox), and fails on any console error.
// Usage: node console_firefox.mjs BASE_URL API_KEY   (PUPPETEER_DIR: where puppeteer-core is)

import { createRequire } from "node:module";

const require = createRequire(`${process.env.PUPPETEER_DIR}/`);
const puppeteer = require("puppeteer-core");
const [base, key] = process.argv.slice(2);
const TIMEOUT_MS = 30000;

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  timeout: TIMEOUT_MS,
});
const errors = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  await page.goto(`${base}/console`);
  await page.type("#key", key);
  await page.click("#signin-form button[type=submit]");
  await page.waitForFunction(() => {
    const text = document.querySelector("#page")?.textContent || "";
    return ["live from the event stream", "Anvil (local)", "anvil dev wallet"]
      .every((part) => text.includes(part));
  });
  if (errors.length) throw new Error(`console errors: ${errors.join(" | ")}`);
  console.log(`ok: ${await browser.version()}`);
} finally {
  await browser.close();
}
