/** Small conversions between database rows and API messages. */
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";

export function ts(d: Date): Timestamp;
export function ts(d: Date | null | undefined): Timestamp | undefined;
export function ts(d: Date | null | undefined): Timestamp | undefined {
  return d ? timestampFromDate(d) : undefined;
}
