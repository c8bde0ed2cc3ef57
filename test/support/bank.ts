import { Body, Controller, HttpCode, Injectable, Module, Post, type DynamicModule, type INestApplication, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { AddressInfo } from 'node:net';
import { InjectConnection, PoolConnection, PoolModule, PoolStatsService, type PoolModuleOptions } from '../../lib/index.js';
import { queryOnce } from './database.js';

// A bank for failover tests: transfers between accounts, each recorded with an
// id the HTTP client chose, the time it was written and the port of the server
// that took it, so that a test can tell which primary committed what and when.

export const ACCOUNTS = 20;
export const OPENING_BALANCE = 1000;

/** Creates the accounts and the transfers table in the database `options` point at. */
export async function openBank(options: PoolModuleOptions): Promise<void> {
  await queryOnce(
    options,
    `CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
     INSERT INTO accounts SELECT g, ${OPENING_BALANCE} FROM generate_series(1, ${ACCOUNTS}) g;
     CREATE TABLE transfers (
       id text PRIMARY KEY, source int NOT NULL, target int NOT NULL, amount int NOT NULL,
       written_at timestamptz NOT NULL DEFAULT clock_timestamp(), server_port int NOT NULL DEFAULT inet_server_port()
     )`,
  );
}

/** One transfer as an HTTP client asks for it. */
export interface TransferOrder {
  id: string;
  source: number;
  target: number;
  amount: number;
}

@Injectable()
class Ledger {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  /** Both balances and the record in one transaction; accounts are updated in id order, so two transfers never deadlock. */
  transfer(order: TransferOrder): Promise<void> {
    const moves = [
      { account: order.source, delta: -order.amount },
      { account: order.target, delta: order.amount },
    ].sort((a, b) => a.account - b.account);
    return this.connection.transaction(async () => {
      for (const { account, delta } of moves) {
        await this.connection.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [account, delta]);
      }
      await this.connection.query('INSERT INTO transfers (id, source, target, amount) VALUES ($1, $2, $3, $4)', [
        order.id,
        order.source,
        order.target,
        order.amount,
      ]);
    });
  }
}

@Controller()
class TransfersController {
  constructor(private readonly ledger: Ledger) {}

  @Post('transfers')
  @HttpCode(200)
  async transfer(@Body() order: TransferOrder): Promise<string> {
    await this.ledger.transfer(order);
    return order.id;
  }
}

@Module({})
class BankModule {
  static with(options: PoolModuleOptions): DynamicModule {
    return { module: BankModule, imports: [PoolModule.forRoot(options)], controllers: [TransfersController], providers: [Ledger] };
  }
}

/** The bank's Nest application on Express, listening on a free port of 127.0.0.1. */
export async function startBank(options: PoolModuleOptions, logger: LoggerService | false = false): Promise<{ app: INestApplication; url: string }> {
  const app = await NestFactory.create(BankModule.with(options), new ExpressAdapter(), { logger, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}` };
}

/** Connections the bank's datasource has lent and not had back, and connections checked out of its pool. */
export function outstanding(app: INestApplication): { leased: number; inUse: number } {
  const stats = app.get(PoolStatsService).get();
  return { leased: stats.acquired - stats.released, inUse: stats.inUse };
}

/** What the books of a server say after a run. */
export interface Audit {
  /** Sum of every balance: ACCOUNTS × OPENING_BALANCE, whatever was transferred. */
  total: number;
  /** Ids of the acknowledged transfers the server does not have. */
  missing: string[];
  /** Answers other than 200 whose transfer the server has all the same (committed, the answer lost or failed), by status. */
  committedUnacknowledged: Record<string, number>;
}

/** Checks the books of the server `options` point at against the answers of the HTTP clients. */
export async function audit(options: PoolModuleOptions, answers: Iterable<{ id: string; status: number }>): Promise<Audit> {
  const { rows } = await queryOnce<{ total: string }>(options, 'SELECT sum(balance)::text AS total FROM accounts');
  const ids = new Set((await queryOnce<{ id: string }>(options, 'SELECT id FROM transfers')).rows.map((row) => row.id));
  const books: Audit = { total: Number(rows[0].total), missing: [], committedUnacknowledged: {} };
  for (const { id, status } of answers) {
    if (status === 200 && !ids.has(id)) books.missing.push(id);
    if (status !== 200 && ids.has(id)) books.committedUnacknowledged[status] = (books.committedUnacknowledged[status] ?? 0) + 1;
  }
  return books;
}

/**
 * The transfers of one load (ids starting `<run>-`) that the server `options`
 * point at wrote itself (its port, not replicated rows), and when it wrote
 * the first: on a promoted standby, the application's first commit there.
 */
export async function ownTransfers(options: PoolModuleOptions, port: number, run: string): Promise<{ ids: Set<string>; firstAt: number | undefined }> {
  const { rows } = await queryOnce<{ id: string; written_at: Date }>(
    options,
    "SELECT id, written_at FROM transfers WHERE server_port = $1 AND starts_with(id, $2 || '-') ORDER BY written_at",
    [port, run],
  );
  return { ids: new Set(rows.map((row) => row.id)), firstAt: rows[0]?.written_at.getTime() };
}
