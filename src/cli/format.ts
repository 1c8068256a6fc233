/** How the CLI prints builds for people (JSON with --json). */
import { type Build, builderPath } from '../domain/build.ts';
import { type StoredVerification } from '../domain/verification.ts';

/** One line per build: id, builder #number, status (details), age. */
export function buildLine(b: Build): string {
  const details = Object.entries(b.statusDetails)
    .filter(([, v]) => v)
    .map(([k]) => k);
  return [
    b.id,
    `${builderPath(b.builder)} #${b.number}`,
    b.status + (details.length ? ` (${details.join(', ')})` : ''),
    b.createTime,
  ].join('  ');
}

/** A build in full, for `kiln get`. */
export function buildDetails(b: Build): string {
  const lines = [
    `build ${b.id}: ${builderPath(b.builder)} #${b.number}`,
    `status:   ${buildLine(b).split('  ')[2]}`,
    `created:  ${b.createTime}${b.createdBy ? ` by ${b.createdBy}` : ''}`,
  ];
  if (b.startTime) lines.push(`started:  ${b.startTime}`);
  if (b.endTime) lines.push(`ended:    ${b.endTime}`);
  if (b.leaseHolder) lines.push(`lease:    ${b.leaseHolder} until ${b.leaseExpiration ?? '?'}`);
  if (b.url) lines.push(`url:      ${b.url}`);
  const c = b.input.gitilesCommit; // ---- launchpad ----
  if (c) lines.push(`commit:   ${c.host}/${c.project} ${c.ref} ${c.id}`);
  // ---- chromium2: schedule inputs ----
  for (const g of b.input.gerritChanges ?? [])
    lines.push(`gerrit:   ${g.host}/${g.change}/${g.patchset} (${g.project})`);
  for (const ch of b.input.changes ?? []) {
    const who = ch.author?.email ?? ch.author?.name;
    const what = [ch.id, ch.revision, ch.project ?? ch.repo_url, ch.url].filter(Boolean).join(' ');
    lines.push(`change:   ${what || '(no id)'}${who ? ` by ${who}` : ''}`);
  }
  if (b.summaryMarkdown) lines.push(`summary:  ${b.summaryMarkdown}`);
  lines.push(`priority: ${b.priority}`, `tags:     ${b.tags.join(' ') || '-'}`);
  // ---- chromium2: steps and output properties ----
  if (b.steps?.length) {
    lines.push('steps:');
    for (const st of b.steps) {
      const depth = st.name.split('|').length - 1;
      const when = st.startTime ? ` ${st.startTime}${st.endTime ? ` → ${st.endTime}` : ''}` : '';
      lines.push(`  ${'  '.repeat(depth)}${st.name.split('|').at(-1)}  ${st.status}${when}`);
      if (st.summaryMarkdown) lines.push(`  ${'  '.repeat(depth)}  ${st.summaryMarkdown}`);
      for (const l of st.logs ?? []) lines.push(`  ${'  '.repeat(depth)}  log ${l.name}: ${l.url}`);
    }
  }
  const out = b.output?.properties;
  if (out && Object.keys(out).length) {
    lines.push('output:', ...Object.entries(out).map(([k, v]) => `  ${k} = ${JSON.stringify(v)}`));
  }
  if (b.events.length) lines.push('history:', ...b.events.map((e) => `  ${e.time} ${e.kind} ${e.message}`));
  return lines.join('\n');
}

/** A verification attempt, for `kiln gerrit verifications`: a header line, then one line per platform. */
export function verificationLines(v: StoredVerification): string[] {
  const vote = v.vote === undefined ? 'no vote' : `Verified ${v.vote > 0 ? '+' : ''}${v.vote}`;
  const flags = [v.merged ? 'merged' : '', v.canceled ? `canceled: ${v.canceled}` : ''].filter(Boolean);
  return [
    `${v.host} change ${v.change} patch set ${v.patchset}  ${v.phase}  ${vote}  ${v.createTime}${flags.length ? `  (${flags.join('; ')})` : ''}`,
    `  ${v.reason}`,
    ...v.platforms.map(
      (p) =>
        `  ${p.name}  ${p.status}${p.holder ? ` on ${p.holder}` : ''}  build ${p.buildId} (${builderPath(p.builder)} #${p.number})`,
    ),
  ];
}
