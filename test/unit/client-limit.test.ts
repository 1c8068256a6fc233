/** The per-client bound on lease-key calls: refuse past the limit at once, per address, and free slots on answer. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientLimiter } from '../../src/api/clientLimit.ts';
import { KilnError } from '../../src/domain/errors.ts';

describe('ClientLimiter', () => {
  it('lets each address have at most max calls in flight, and frees a slot when a call answers or fails', async () => {
    const l = new ClientLimiter(2);
    const gates: (() => void)[] = [];
    const held = () => new Promise<void>((r) => gates.push(r));
    const a1 = l.run('a', held);
    const a2 = l.run('a', async () => {
      await held();
      throw new Error('boom');
    });
    await assert.rejects(
      l.run('a', async () => 'x'),
      (e: unknown) => e instanceof KilnError && e.code === 'UNAVAILABLE',
    );
    assert.equal(await l.run('b', async () => 'other client'), 'other client');
    gates[0]?.();
    await a1;
    assert.equal(await l.run('a', async () => 'freed'), 'freed');
    gates[1]?.();
    await assert.rejects(a2, /boom/);
    const all = await Promise.all([l.run('a', async () => 1), l.run('a', async () => 2)]);
    assert.deepEqual(all, [1, 2]);
  });
});
