/**
 * Kiln's web UI in headless Chromium against a real `kiln dev` (Temporal dev server with its Web UI,
 * worker, API serving the UI, dev runner) with real builds: every page renders; filters change the
 * list and the URL; a build moves SCHEDULED → STARTED → SUCCESS on screen without a reload; cancel
 * from the UI ends the build; a READER's page offers no cancel and the API refuses it anyway; a
 * verification's platform table fills as tinderboxes take and report; bad input and unknown things
 * show what was wrong; a wrong token returns to the prompt with the reason.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Page } from 'playwright-core';
import { type Build } from '../../src/domain/build.ts';
import { launchBrowser, startUiDev, UI_TOKENS, type UiDev, until } from '../support/uiDev.ts';

const T = 60_000;

describe('web UI in a real browser', () => {
  let k: UiDev;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;

  before(async () => {
    k = await startUiDev();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await k?.close();
  });

  /** A new tab signed in with `token`. */
  const signedIn = async (token: string, path = '/'): Promise<Page> => {
    const page = await browser.context.newPage();
    await page.goto(`${k.api}${path}`);
    await page.locator('input[name=token]').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('header .brand').waitFor({ timeout: T });
    return page;
  };
  const badge = (page: Page) => page.locator('h1 .status');

  it('renders every page, and a 404 page naming what was not found', async () => {
    const pass = await k.schedule('demo/ci/pass', { tags: ['buildset:commit/render'] });
    await until(
      'the pass build to end',
      async () => (await k.call<Build>('GET', `/api/v1/builds/${pass.id}`)).body.status === 'SUCCESS',
      120_000,
    );
    const page = await signedIn(UI_TOKENS.admin);
    const pages: [string, string][] = [
      ['/builds', `tr[data-build-id="${pass.id}"]`],
      [`/builds/${pass.id}`, 'text=all tests passed'],
      ['/console?bucket=demo/ci', `table.console a[data-build-id="${pass.id}"]`],
      ['/console?bucket=demo/ci&by=buildset', 'text=commit/render'],
      ['/pipeline', 'h2:has-text("Pending")'],
      ['/changes', 'h1:has-text("Change verifications")'],
      ['/stats?builder=demo/ci/pass&days=7', '[data-testid=chart-builds] svg .recharts-bar-rectangle'],
    ];
    for (const [path, ready] of pages) {
      await page.goto(`${k.api}${path}`);
      await page.locator(ready).first().waitFor({ timeout: T });
    }
    // The log keeps the runner's ANSI colours as styled spans.
    await page.goto(`${k.api}/builds/${pass.id}`);
    await page
      .locator('[data-testid=log-text] .ansi-green-fg', { hasText: 'all tests passed' })
      .waitFor({ timeout: T });
    const notFound = async (path: string, text: RegExp) => {
      await page.goto(`${k.api}${path}`);
      await page.getByTestId('not-found').waitFor({ timeout: T });
      assert.match(await page.getByTestId('not-found').innerText(), text, path);
    };
    await notFound('/builds/12345', /build 12345 not found/);
    await notFound('/builds/not-a-build', /"not-a-build" is not a build ID/);
    await notFound('/stats?builder=demo/ci/nope', /builder demo\/ci\/nope is not configured/);
    await notFound('/changes/review.example.org/999/1', /no verification of change 999 patch set 1/);
    await notFound('/no/such/page', /There is no page at \/no\/such\/page/);
    await page.close();
  });

  it('filters change the list and the URL; bad filter values name the field', async () => {
    const fail = await k.schedule('demo/ci/fail');
    await until(
      'the fail build to end',
      async () => (await k.call<Build>('GET', `/api/v1/builds/${fail.id}`)).body.status === 'FAILURE',
      120_000,
    );
    const page = await signedIn(UI_TOKENS.admin, '/builds');
    await page.locator(`tr[data-build-id="${fail.id}"]`).waitFor({ timeout: T });
    await page.locator('select[name=status]').selectOption('SUCCESS');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/status=SUCCESS/, { timeout: T });
    await page.locator('tr[data-status="SUCCESS"]').first().waitFor({ timeout: T });
    assert.equal(await page.locator(`tr[data-build-id="${fail.id}"]`).count(), 0, 'the failure left the list');
    assert.equal(await page.locator('table.builds tbody tr:not([data-status="SUCCESS"])').count(), 0);
    await page.locator('select[name=status]').selectOption('FAILURE');
    await page.locator('input[name=builder]').fill('demo/ci/fail');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/builder=demo%2Fci%2Ffail.*status=FAILURE|status=FAILURE.*builder=demo%2Fci%2Ffail/, {
      timeout: T,
    });
    await page.locator(`tr[data-build-id="${fail.id}"]`).waitFor({ timeout: T });
    assert.equal(await page.locator('table.builds tbody tr:not([data-status="FAILURE"])').count(), 0);
    for (const [query, field] of [
      ['status=DONE', /query\.status/],
      ['createdAfter=yesterday', /query\.createdAfter/],
      ['tag=nocolon', /query\.tag/],
      ['builder=a/b', /builder: give project\/bucket\/builder/],
    ] as const) {
      await page.goto(`${k.api}/builds?${query}`);
      await page.getByRole('alert').first().waitFor({ timeout: T });
      assert.match(await page.getByRole('alert').first().innerText(), field, query);
    }
    await page.close();
  });

  it('shows a build move SCHEDULED → STARTED → SUCCESS without a reload, with its live log', async () => {
    const b = await k.schedule('demo/ci/manual', { properties: { revision: 'abc' } });
    const page = await signedIn(UI_TOKENS.admin, `/builds/${b.id}`);
    const list = await signedIn(UI_TOKENS.admin, '/builds?builder=demo/ci/manual');
    await page.evaluate(() => ((globalThis as unknown as { kilnMarker: number }).kilnMarker = 42));
    await badge(page).getByText('Scheduled').waitFor({ timeout: T });
    await list.locator(`tr[data-build-id="${b.id}"][data-status="SCHEDULED"]`).waitFor({ timeout: T });
    const key = await k.leaseAndStart(b.id, 'ui-test-runner');
    await badge(page).getByText('Started').waitFor({ timeout: T });
    await page.getByText('ui-test-runner').first().waitFor({ timeout: T });
    await list.locator(`tr[data-build-id="${b.id}"][data-status="STARTED"]`).waitFor({ timeout: T });
    await k.uploadLog(b.id, key, 0, 'step 1\n\u001b[31mred line\u001b[0m\n', false);
    await page.locator('[data-testid=log-text] .ansi-red-fg', { hasText: 'red line' }).waitFor({ timeout: T });
    await k.uploadLog(b.id, key, 'step 1\n\u001b[31mred line\u001b[0m\n'.length, 'step 2 done\n', true);
    await page.locator('[data-testid=log-text]', { hasText: 'step 2 done' }).waitFor({ timeout: T });
    const done = await k.call<Build>('POST', `/api/v1/builds/${b.id}/succeed`, { leaseKey: key });
    assert.equal(done.body.status, 'SUCCESS');
    await badge(page).getByText('Success').waitFor({ timeout: T });
    await list.locator(`tr[data-build-id="${b.id}"][data-status="SUCCESS"]`).waitFor({ timeout: T });
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { kilnMarker?: number }).kilnMarker),
      42,
      'no reload',
    );
    // The lease history and the Temporal UI link, which opens this build's workflow.
    await page.getByTestId('lease-history').getByText('started by ui-test-runner').waitFor({ timeout: T });
    const href = await page.getByRole('link', { name: /Temporal UI workflow/ }).getAttribute('href');
    assert.equal(href, `${k.temporalUi}/namespaces/default/workflows/${encodeURIComponent(`build/${b.id}`)}`);
    const temporal = await browser.context.newPage();
    await temporal.goto(href!);
    await temporal.getByText(`build/${b.id}`).first().waitFor({ timeout: T });
    await temporal.waitForURL(/\/workflows\/build%2F\d+\/[0-9a-f-]{36}/, { timeout: T });
    await temporal.close();
    await list.close();
    await page.close();
  });

  it('cancels a running build from the UI', async () => {
    const b = await k.schedule('demo/ci/long');
    await until(
      'the long build to start',
      async () => (await k.call<Build>('GET', `/api/v1/builds/${b.id}`)).body.status === 'STARTED',
      120_000,
    );
    const page = await signedIn(UI_TOKENS.scheduler, `/builds/${b.id}`);
    await badge(page).getByText('Started').waitFor({ timeout: T });
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Cancel build' }).click();
    await badge(page).getByText('Canceled').waitFor({ timeout: T });
    await page.locator('.reason', { hasText: 'canceled by scheduler' }).waitFor({ timeout: T });
    assert.equal((await k.call<Build>('GET', `/api/v1/builds/${b.id}`)).body.status, 'CANCELED');
    assert.equal(await page.getByRole('button', { name: 'Cancel build' }).count(), 0, 'nothing left to cancel');
    await page.close();
  });

  it('offers a READER no cancel, and the API refuses it anyway; a wrong token goes back to the prompt', async () => {
    const b = await k.schedule('demo/ci/manual');
    const page = await signedIn(UI_TOKENS.reader, `/builds/${b.id}`);
    await badge(page).getByText('Scheduled').waitFor({ timeout: T });
    assert.equal(await page.getByRole('button', { name: 'Cancel build' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Rebuild' }).count(), 0);
    assert.equal(await page.locator('input[name=priority]').count(), 0);
    const refused = await page.evaluate(
      async ([id, token]) =>
        (
          await fetch(`/api/v1/builds/${id}/cancel`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: '{}',
          })
        ).json() as Promise<{ code: string }>,
      [b.id, UI_TOKENS.reader],
    );
    assert.equal(refused.code, 'PERMISSION_DENIED');
    assert.equal((await k.call<Build>('GET', `/api/v1/builds/${b.id}`)).body.status, 'SCHEDULED');
    // Only readable buckets: lo/gerrit is not the reader's.
    await page.goto(`${k.api}/console`);
    await page.locator('nav.tabs').waitFor({ timeout: T });
    assert.deepEqual(
      await page
        .locator('nav.tabs button')
        .allInnerTexts()
        .then((t) => t.filter((x) => x.includes('/'))),
      ['demo/ci'],
    );
    // A token that stops working (here: a wrong one in the session) sends the user back to the prompt.
    await page.evaluate(() =>
      (globalThis as unknown as { sessionStorage: { setItem(k: string, v: string): void } }).sessionStorage.setItem(
        'kiln.token',
        'not-a-valid-token-0123456789',
      ),
    );
    await page.goto(`${k.api}/builds`);
    await page.getByTestId('token-reason').waitFor({ timeout: T });
    assert.match(await page.getByTestId('token-reason').innerText(), /refused: unknown token/);
    // The admin sees priority and cancel on a pending build.
    const admin = await signedIn(UI_TOKENS.admin, `/builds/${b.id}`);
    await admin.locator('input[name=priority]').fill('7');
    await admin.getByRole('button', { name: 'Set' }).click();
    await until(
      'the new priority',
      async () => (await k.call<Build>('GET', `/api/v1/builds/${b.id}`)).body.priority === 7,
    );
    await admin.close();
    await page.close();
  });

  it("fills a verification's platform table as tinderboxes take and report", async () => {
    const { change, patchset } = await k.newChange();
    const page = await signedIn(UI_TOKENS.admin, `/changes/review.example.org/${change}/${patchset}`);
    const row = (p: string) => page.locator(`[data-testid=platforms] tr[data-platform="${p}"]`);
    await row('LINUX').and(page.locator('[data-status="SCHEDULED"]')).waitFor({ timeout: T });
    await row('WINDOWS').and(page.locator('[data-status="SCHEDULED"]')).waitFor({ timeout: T });
    const linux = await until('a LINUX task', () => k.tinderboxGetTask('LINUX', 'tb-linux-1'));
    await row('LINUX').and(page.locator('[data-status="STARTED"]')).waitFor({ timeout: T });
    await row('LINUX').getByText('tb-linux-1').waitFor({ timeout: T });
    await k.tinderboxReport(linux.buildId, linux.leaseKey, 'SUCCESS', 'linux ok\n');
    await row('LINUX').and(page.locator('[data-status="SUCCESS"]')).waitFor({ timeout: T });
    const win = await until('a WINDOWS task', () => k.tinderboxGetTask('WINDOWS', 'tb-win-1'));
    await row('WINDOWS').getByText('tb-win-1').waitFor({ timeout: T });
    await k.tinderboxReport(win.buildId, win.leaseKey, 'FAILURE', 'windows broke\n');
    await row('WINDOWS').and(page.locator('[data-status="FAILURE"]')).waitFor({ timeout: T });
    await page.getByTestId('vote').getByText('Verified -1').waitFor({ timeout: T });
    const messages = await page.getByTestId('messages').innerText();
    assert.match(messages, /LINUX: taken by tb-linux-1/);
    assert.match(messages, /WINDOWS: FAILURE on tb-win-1/);
    // The pipeline listed it while it was in flight; the changes list has it now.
    await page.goto(`${k.api}/changes`);
    await page.getByRole('link', { name: `${change}/${patchset}` }).waitFor({ timeout: T });
    await page.close();
  });
});
