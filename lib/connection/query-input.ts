import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';

/** A statement as node-postgres takes it: its text, or a config (`text`, `values`, `name`, `types`). */
export type QueryInput = string | QueryConfig<unknown[]>;

/** How the module's queries report back internally: pg's callback shape. */
export type QueryCallback<R extends QueryResultRow> = (error: Error | undefined, result?: QueryResult<R>) => void;

/** The text of a statement. */
export function textOf(input: QueryInput): string {
  return typeof input === 'string' ? input : input.text;
}
