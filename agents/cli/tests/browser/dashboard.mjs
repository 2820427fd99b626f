// Opens the gateway's dashboard in headless Chromium, enters an API key, runs a module from
// the form and waits for its stdout to show. Usage:
//   node dashboard.mjs <gateway-url> <api-key> <message> <screenshot.png>
import { chromium } from "playwright-core";

const [url, key, message, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  await page.goto(url);
  // the live market stream and the module list arrive
  await page.waitForFunction(() => document.getElementById("conn").textContent.startsWith("live"), null, { timeout: 30000 });
  await page.waitForSelector("#module option[value='lilysay:0.1.0']", { state: "attached", timeout: 30000 });
  await page.fill("#api-key", key);
  await page.selectOption("#module", "lilysay:0.1.0");
  await page.fill("#in-Message", message);
  await page.click("#run");
  await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("result").dataset.state), null, { timeout: 120000 });
  const state = await page.getAttribute("#result", "data-state");
  const text = await page.textContent("#result");
  // the market tables filled in from the event stream
  await page.waitForFunction(() => document.querySelectorAll("#jobs tr").length > 0 && document.querySelectorAll("#providers tr").length > 0, null, { timeout: 30000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ state, text }));
  if (state !== "done" || !text.includes(message)) process.exit(1);
} finally {
  await browser.close();
}
