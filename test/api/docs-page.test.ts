import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { chromiumUnavailableReason, launchChromium, type Browser, type Page } from "../support/chromium.ts";
import { skipWithout } from "../support/prerequisites.ts";

// /docs as a newcomer opens it: the API on a port other than 8080, the page
// in a real (headless) Chromium. The screenshot is left for a person to look
// at; the checks read the rendered DOM.

const SCREENSHOT = new URL("../../.weft/docs-page.png", import.meta.url).pathname;

describe.skipIf(skipWithout("Chromium", chromiumUnavailableReason()))("the /docs page in headless Chromium", () => {
  let home: string;
  let api: ApiProcess;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "weft-docs-"));
    api = await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, DATABASE_URL: "", WEFT_DATA_DIR: join(home, "data"), LOG_LEVEL: "info" });
    browser = await launchChromium();
    page = await browser.newPage();
    await page.goto(`${api.base}/docs`);
    await page.waitFor("document.querySelectorAll('.opblock').length > 20 && document.querySelector('.servers select') !== null", "the operations and the servers list", 90_000);
    mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
    writeFileSync(SCREENSHOT, await page.screenshot());
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await api?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it("runs on a port other than the default", () => {
    expect(new URL(api.base).port).not.toBe("8080");
  });

  it("is titled and branded Weft, with no Swagger UI title and no Fastify logo", async () => {
    const title = await page.evaluate<string>("document.title");
    expect(title).toMatch(/Weft/);
    expect(title).not.toMatch(/Swagger/i);
    expect(await page.evaluate<string>("document.querySelector('.info .title').textContent")).toMatch(/^Weft control API/);
    const logo = await page.evaluate<string>("document.querySelector('.topbar img').src");
    const svg = Buffer.from(logo.replace(/^data:image\/svg\+xml;base64,/, ""), "base64").toString("utf8");
    expect(svg).toMatch(/aria-label="Weft"/);
    expect(svg).not.toMatch(/fastify|swagger/i);
    expect(await page.evaluate<string>("document.querySelector('link[rel=icon]').href")).toMatch(/\/docs\/static\/theme\/weft\.svg$/);
    const icon = await fetch(`${api.base}/docs/static/theme/weft.svg`);
    expect(icon.status).toBe(200);
  });

  it("loads the document from /openapi.json, the README's URL, and links to it", async () => {
    expect(await page.evaluate<string>("document.querySelector('.info a.link').href")).toBe(`${api.base}/openapi.json`);
    const requested = api
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => (JSON.parse(l) as { req?: { url?: string } }).req?.url)
      .filter((u): u is string => u !== undefined);
    expect(requested).toContain("/openapi.json");
    expect(requested).not.toContain("/docs/json");
  });

  it("shows the address it was served from as the server, and Try it out calls it", async () => {
    const servers = await page.evaluate<string[]>("[...document.querySelectorAll('.servers select option')].map((o) => o.value)");
    expect(servers).toEqual(["/"]);
    expect(await page.evaluate<string>("document.body.innerText")).not.toContain("127.0.0.1:8080");
    // GET /healthz, through the page's own buttons.
    await page.evaluate("document.querySelector('#operations-system-getHealthz .opblock-summary-control').click()");
    await page.waitFor("document.querySelector('#operations-system-getHealthz .try-out__btn') !== null", "Try it out");
    await page.evaluate("document.querySelector('#operations-system-getHealthz .try-out__btn').click()");
    await page.waitFor("document.querySelector('#operations-system-getHealthz .execute') !== null", "Execute");
    await page.evaluate("document.querySelector('#operations-system-getHealthz .execute').click()");
    const requestUrl = await page.waitFor<string>("document.querySelector('#operations-system-getHealthz .request-url pre')?.textContent", "the request URL");
    expect(requestUrl).toBe(`${api.base}/healthz`);
    const status = await page.waitFor<string>("document.querySelector('#operations-system-getHealthz .live-responses-table tbody .response-col_status')?.textContent", "the response");
    expect(status.trim()).toBe("200");
    writeFileSync(SCREENSHOT, await page.screenshot());
  });
});
