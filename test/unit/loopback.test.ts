/** The no-auth loopback check resolves names and compares addresses; it never matches prefixes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoopback } from '../../src/api/auth.ts';

describe('isLoopback', () => {
  it('accepts loopback addresses and names that resolve only to them', async () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost']) {
      assert.equal(await isLoopback(h), true, h);
    }
  });

  it('refuses other addresses, and names that merely start like a loopback address', async () => {
    for (const h of ['127.attacker.example', '127.0.0.1.nip.example', '0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '']) {
      assert.equal(await isLoopback(h), false, h);
    }
  });
});
