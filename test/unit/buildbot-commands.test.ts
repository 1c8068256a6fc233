/** The pure parts of the plugin's SSH command surface: command-line splitting and platform names. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kilnPlatform, splitCommandLine } from '../../src/builds/buildbotCommands.ts';
import { toTask } from '../../src/builds/tinderbox.ts';
import { type Build } from '../../src/domain/build.ts';

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

  void it("a tinderbox task names the patch set's commit, never CQ's revision HEAD", () => {
    const build = (revision: string) =>
      ({
        id: '42',
        builder: { project: 'lo', bucket: 'gerrit', builder: 'LINUX' },
        number: 1,
        tags: ['buildset:patch/gerrit/g/1/1'],
        input: {
          properties: { revision, 'event.patchSet.ref': 'refs/changes/01/1/1' },
          gerritChanges: [{ host: 'g', project: 'core', change: 1, patchset: 1 }],
        },
      }) as unknown as Build;
    const sha = 'a'.repeat(40);
    assert.equal(toTask(build(sha), 'k', 'e').gerrit?.revision, sha);
    assert.equal(toTask(build('HEAD'), 'k', 'e').gerrit?.revision, undefined);
    assert.equal(toTask(build('HEAD'), 'k', 'e').gerrit?.ref, 'refs/changes/01/1/1');
  });
});
