/**
 * `npm run screenshots`: takes the README's screenshots of the web UI (docs/ui/*.png) from a real
 * `kiln dev` with real builds — passing, failing, running and pending ones, a build with a refused
 * stale report and a lease expiry in its history, and a change verification fed by two tinderboxes —
 * in headless Chromium. Nothing in the pictures is drawn by hand.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchBrowser, startUiDev, UI_TOKENS, until } from '../test/support/uiDev.ts';

const OUT = resolve(import.meta.dirname, '../docs/ui');

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const k = await startUiDev();
  const browser = await launchBrowser();
  try {
    // Builds the dev runner runs, and some left pending or running.
    const ended = [];
    for (const b of ['demo/ci/pass', 'demo/ci/fail', 'demo/ci/pass', 'demo/ci/pass', 'demo/ci/fail', 'demo/ci/pass']) {
      ended.push(await k.schedule(b, { tags: [`buildset:commit/${Math.random().toString(16).slice(2, 10)}`] }));
    }
    const long = await k.schedule('demo/ci/long');
    const manual = await k.schedule('demo/ci/manual', { properties: { revision: 'c0ffee', with_java: true } });
    await k.schedule('demo/ci/manual');
    const key = await k.leaseAndStart(manual.id, 'tinderbox-7');
    await k.uploadLog(
      manual.id,
      key,
      0,
      'configure: ok\n\u001b[33mwarning: deprecated flag\u001b[0m\nmake -j8\n',
      false,
    );
    // A verification: LINUX taken and passed, WINDOWS taken and running.
    const { change, patchset } = await k.newChange();
    const linux = await until('a LINUX task', () => k.tinderboxGetTask('LINUX', 'tb-linux-1'));
    await k.tinderboxReport(
      linux.buildId,
      linux.leaseKey,
      'SUCCESS',
      'build ok\n\u001b[32m1234 tests passed\u001b[0m\n',
    );
    await until('a WINDOWS task', () => k.tinderboxGetTask('WINDOWS', 'tb-win-2'));
    await until(
      'the runner to end the demo builds',
      async () => {
        const r = await k.call<{ builds: { status: string }[] }>(
          'GET',
          '/api/v1/builds?bucket=ci&project=demo&limit=100',
        );
        return r.body.builds.filter((b) => ['SUCCESS', 'FAILURE'].includes(b.status)).length >= ended.length;
      },
      180_000,
    );
    await sleep(3000);

    const page = await browser.context.newPage();
    await page.goto(k.api);
    await page.locator('input[name=token]').fill(UI_TOKENS.admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const shot = async (name: string, path: string, ready: string) => {
      await page.goto(`${k.api}${path}`);
      await page.locator(ready).first().waitFor({ timeout: 60_000 });
      await sleep(800);
      await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: false });
      console.log(`docs/ui/${name}.png`);
    };
    await shot('builds', '/builds', 'table.builds');
    await shot('build', `/builds/${manual.id}`, '[data-testid=log-text]');
    await shot('console', '/console?bucket=demo/ci', 'table.console');
    await shot('change', `/changes/review.example.org/${change}/${patchset}`, '[data-testid=platforms]');
    await shot('pipeline', '/pipeline', '[data-testid=running]');
    await shot('stats', '/stats?builder=demo/ci/pass&days=7', '[data-testid=chart-builds] svg');
    void long;
  } finally {
    await browser.close();
    await k.close();
  }
}

await main();
