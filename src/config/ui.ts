/**
 * The `ui` block of Kiln's config: the web UI the API serves under `/` (see README, "Web UI").
 * Everything has a default, so most configs never mention it.
 */
import { z } from 'zod';

/** The `ui` block. */
export const uiConfigSchema = z
  .object({
    /** Serve the web UI under `/`. The API under `/api/v1` is served either way. @default true */
    enabled: z.boolean().default(true),
    /**
     * Base URL of the Temporal Web UI, for the links on build and verification pages. `kiln dev` with its
     * own dev server uses `http://127.0.0.1:<temporal.devServer.uiPort>` when this is absent.
     */
    temporalUiUrl: z.string().url().optional(),
    /** How often the API looks in storage for changed builds to push to open pages. @default 1000 */
    liveIntervalMs: z.number().int().min(100).max(60_000).default(1000),
  })
  .strict();

export type UiConfig = z.infer<typeof uiConfigSchema>;

/** The defaults, for configs without a `ui` block. */
export const UI_DEFAULTS: UiConfig = { enabled: true, liveIntervalMs: 1000 };
