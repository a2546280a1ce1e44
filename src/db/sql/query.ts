/** A query as text plus bind values: values are never spliced into SQL text. */
export interface Query {
  text: string;
  values: unknown[];
}
