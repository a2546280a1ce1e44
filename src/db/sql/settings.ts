/** SQL for the one-row settings table. */
import type { Query } from "./query.ts";

export const cursorSecret = (): Query => ({ text: "SELECT cursor_secret FROM settings", values: [] });
