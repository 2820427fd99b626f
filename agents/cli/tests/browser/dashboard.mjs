// Opens the gateway's dashboard in headless Chromium, enters an API key, runs a module from
// the form and waits for its stdout to show; with an LLM module, then runs it with a prompt and
// waits for the model's answer (outputs/response.json) to show. Usage:
//   node dashboard.mjs <gateway-url> <api-key> <message> <screenshot.png> [<llm-module> <prompt>]
import { chromium } from "playwright-core";

const [url, key, message, screenshot, llm, prompt] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// Runs `module` from the form with `inputs` (input name -> value); returns what #result shows.
async function run(page, module, inputs) {
  await page.waitForSelector(`#module option[value='${module}']`, { state: "attached", timeout: 30000 });
  await page.selectOption("#module", module);
  for (const [name, value] of Object.entries(inputs)) await page.fill(`#in-${name}`, value);
  await page.click("#run");
  await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("result").dataset.state), null, { timeout: 150000 });
  return {
    state: await page.getAttribute("#result", "data-state"),
    kind: await page.getAttribute("#result", "data-kind"),
    label: await page.textContent("#result-label"),
    text: await page.textContent("#result"),
  };
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  await page.goto(url);
  // the live market stream and the module list arrive
  await page.waitForFunction(() => document.getElementById("conn").textContent.startsWith("live"), null, { timeout: 30000 });
  await page.fill("#api-key", key);
  const lilysay = await run(page, "lilysay:0.1.0", { Message: message });
  // the market tables filled in from the event stream
  await page.waitForFunction(() => document.querySelectorAll("#jobs tr").length > 0 && document.querySelectorAll("#providers tr").length > 0, null, { timeout: 30000 });
  let answer = null;
  if (llm) answer = await run(page, llm, { Prompt: prompt, MaxTokens: "24" });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...lilysay, llm: answer }));
  if (lilysay.state !== "done" || lilysay.kind !== "stdout" || !lilysay.text.includes(message)) process.exit(1);
  if (llm && (answer.state !== "done" || answer.kind !== "answer" || !answer.text.trim() || !answer.label.includes(llm))) process.exit(1);
} finally {
  await browser.close();
}
