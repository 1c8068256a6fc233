/**
 * `npm run kiln -- …` runs Kiln in the package's folder, not where the user typed the command. npm
 * says where that was in INIT_CWD; Kiln goes back there, so `-c runner.yaml` and other relative
 * paths mean what the user meant. (`npx kiln …` keeps the working directory by itself.)
 */

/** Moves to the user's directory when run by `npm run kiln`; children do not inherit the marker. */
export function fromNpmRun(env: NodeJS.ProcessEnv = process.env): void {
  if (env.npm_lifecycle_event !== 'kiln') return;
  const cwd = env.INIT_CWD;
  if (cwd && cwd !== process.cwd()) process.chdir(cwd);
  // A build command (or a kiln it runs) is not itself run by `npm run kiln`.
  delete env.npm_lifecycle_event;
  delete env.INIT_CWD;
}
