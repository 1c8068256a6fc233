/**
 * The `tinderboxSsh` block of Kiln's config: an SSH endpoint of Kiln's own that speaks the Buildbot Gerrit
 * Plugin's `buildbot get|put|show|schedule|verify|version` commands, so tinderboxes (LibreOffice's `tinbuild2`)
 * run unchanged against Kiln. Each tinderbox logs in with its id as the SSH user and its public key.
 */
import { z } from 'zod';

const word = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_", "-"');

/** One tinderbox allowed in. */
export const tinderboxSshClientSchema = z
  .object({
    /** The tinderbox id: its SSH user name, and the `--id` it reports with. */
    id: word,
    /** Its public key in OpenSSH form (`ssh-ed25519 AAAA… comment`), or a file holding it. */
    publicKey: z.string().min(1).optional(),
    publicKeyFile: z.string().min(1).optional(),
    /** What it can build beyond its platform (`with-java`): builds needing `cap:<name>` go only to it. */
    capabilities: z.array(word).default([]),
    /** May name another `--id`, and use `schedule` and `verify` (the plugin's buildbot admin group). */
    admin: z.boolean().default(false),
  })
  .strict()
  .refine((t) => (t.publicKey === undefined) !== (t.publicKeyFile === undefined), {
    message: 'give exactly one of publicKey or publicKeyFile',
    path: ['publicKey'],
  });

/** The `tinderboxSsh` block. */
export const tinderboxSshConfigSchema = z
  .object({
    /** @default 127.0.0.1 (loopback: put it behind a port forward, or name an address on purpose) */
    host: z.string().min(1).default('127.0.0.1'),
    /** @default 29419 (Gerrit's own SSH port is 29418) */
    port: z.number().int().min(0).max(65535).default(29419),
    /** Kiln's SSH host key (PEM); made on first start when missing. @default <dataDir>/ssh_host_rsa_key */
    hostKeyFile: z.string().min(1).optional(),
    tinderboxes: z.array(tinderboxSshClientSchema).min(1),
  })
  .strict();

export type TinderboxSshConfig = z.infer<typeof tinderboxSshConfigSchema>;
