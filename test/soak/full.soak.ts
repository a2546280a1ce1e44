/** `npm run soak`: the full virtual-time soak, 90 simulated days of 200 shops (docs/soak.md). */
import { defineSoak } from "./run.ts";

defineSoak("full");
