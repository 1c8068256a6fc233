/** The pure parts of the plugin's SSH command surface: command-line splitting and platform names. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kilnPlatform, splitCommandLine } from '../../src/builds/buildbotCommands.ts';

void describe('buildbot command lines', () => {
  void it('splits words and quotes like a shell would, and refuses an unterminated quote', () => {
    assert.deepEqual(splitCommandLine('buildbot get  -p core --id "tb 1" master'), [
      'buildbot',
      'get',
      '-p',
      'core',
      '--id',
      'tb 1',
      'master',
    ]);
    assert.deepEqual(splitCommandLine(`buildbot put -t 'a_b' --log -`), ['buildbot', 'put', '-t', 'a_b', '--log', '-']);
    assert.deepEqual(splitCommandLine('a\\ b ""'), ['a b', '']);
    assert.throws(() => splitCommandLine('buildbot "get'), /unterminated quote/);
  });

  void it("maps the plugin's platforms and --os values to Kiln platforms", () => {
    assert.deepEqual(['linux', 'Windows', 'mac', 'MacOSX', 'LINUX', 'android'].map(kilnPlatform), [
      'LINUX',
      'WINDOWS',
      'MAC',
      'MAC',
      'LINUX',
      'ANDROID',
    ]);
  });
});
